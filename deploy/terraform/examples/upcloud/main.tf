# Example: relays on UpCloud in de-fra1 (docs/runbook.md "UpCloud"). Credentials: UPCLOUD_USERNAME/PASSWORD.
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    upcloud = {
      source  = "UpCloudLtd/upcloud"
      version = "~> 5.14"
    }
  }
}

provider "upcloud" {}

module "relay" {
  source          = "../../modules/upcloud"
  name            = "shadowmesh-relay"
  zone            = "de-fra1"
  image           = "ghcr.io/shadowmesh/shadowmesh-client@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  ssh_public_keys = [file("~/.ssh/id_ed25519.pub")]
  domain_name     = "relay.example.net"
  replicas        = 3
}

output "lb_dns_name" {
  value = module.relay.lb_dns_name
}

output "relay_public_ips" {
  value = module.relay.relay_public_ips
}
