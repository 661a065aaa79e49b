output "vpc_id" {
  description = "VPC of the relays."
  value       = aws_vpc.this.id
}

output "load_balancer_dns_name" {
  description = "DNS name of the ALB (domain_name is an alias of it)."
  value       = aws_lb.this.dns_name
}

output "endpoint_host" {
  description = "Host of the relay endpoint to register (wss://<host>/<secret path>)."
  value       = aws_route53_record.relay.fqdn
}

output "relay_key_secret_arn" {
  description = "Secrets Manager secret to put the encrypted relay key and passphrase into."
  value       = aws_secretsmanager_secret.relay_key.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the secret, logs and configuration."
  value       = aws_kms_key.this.arn
}

output "autoscaling_group_name" {
  description = "Autoscaling group of the relays."
  value       = aws_autoscaling_group.relay.name
}
