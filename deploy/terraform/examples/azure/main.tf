# Example: relays on Azure in westeurope (docs/runbook.md "Azure").
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.8"
    }
  }
}

provider "azurerm" {
  features {}
}

module "relay" {
  source                    = "../../modules/azure"
  name                      = "shadowmesh-relay"
  location                  = "westeurope"
  image                     = "shadowmesh.azurecr.io/shadowmesh-client@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  admin_ssh_public_key      = file("~/.ssh/id_ed25519.pub")
  domain_name               = "relay"
  dns_zone_name             = "example.net"
  dns_zone_resource_group   = "dns"
  tls_certificate_secret_id = "https://shadowmesh-certs.vault.azure.net/secrets/relay-example-net"
  min_instances             = 3
}

output "endpoint_host" {
  value = module.relay.endpoint_host
}

output "key_vault_name" {
  value = module.relay.key_vault_name
}
