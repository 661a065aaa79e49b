output "network_id" {
  description = "VPC of the relays."
  value       = google_compute_network.this.id
}

output "load_balancer_ip" {
  description = "Global address of the HTTPS load balancer."
  value       = google_compute_global_address.relay.address
}

output "endpoint_host" {
  description = "Host of the relay endpoint to register."
  value       = google_dns_record_set.relay.name
}

output "relay_key_secret_id" {
  description = "Secret Manager secret to add the encrypted relay key and passphrase to."
  value       = google_secret_manager_secret.relay_key.id
}

output "kms_key_id" {
  description = "Cloud KMS key encrypting the secret."
  value       = google_kms_crypto_key.this.id
}

output "instance_group" {
  description = "Managed instance group of the relays."
  value       = google_compute_region_instance_group_manager.relay.instance_group
}
