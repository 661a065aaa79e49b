output "resource_group_name" {
  description = "Resource group of every resource."
  value       = azurerm_resource_group.this.name
}

output "gateway_public_ip" {
  description = "Public address of the Application Gateway."
  value       = azurerm_public_ip.gateway.ip_address
}

output "endpoint_host" {
  description = "Host of the relay endpoint to register."
  value       = azurerm_dns_a_record.relay.fqdn
}

output "key_vault_name" {
  description = "Key Vault holding the relay-key secret (set its value: docs/runbook.md)."
  value       = azurerm_key_vault.this.name
}

output "scale_set_id" {
  description = "VM scale set of the relays."
  value       = azurerm_linux_virtual_machine_scale_set.relay.id
}
