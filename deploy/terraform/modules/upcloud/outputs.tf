output "lb_dns_name" {
  description = "DNS name of the load balancer: point a CNAME for domain_name at it."
  value       = [for n in upcloud_loadbalancer.this.networks : n.dns_name if n.type == "public"][0]
}

output "endpoint_host" {
  description = "Host of the relay endpoint to register."
  value       = var.domain_name
}

output "relay_public_ips" {
  description = "Public addresses of the relay servers (SSH from management only)."
  value       = [for s in upcloud_server.relay : s.network_interface[0].ip_address]
}

output "network_id" {
  description = "Private network of the relays."
  value       = upcloud_network.relays.id
}
