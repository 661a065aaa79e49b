# Example: relays on GCP in europe-west3 on Spot VMs (docs/runbook.md "GCP").
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.8"
    }
  }
}

provider "google" {
  project = "shadowmesh-prod"
  region  = "europe-west3"
}

module "relay" {
  source        = "../../modules/gcp"
  name          = "shadowmesh-relay"
  project       = "shadowmesh-prod"
  region        = "europe-west3"
  image         = "europe-west3-docker.pkg.dev/shadowmesh-prod/images/shadowmesh-client@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  domain_name   = "relay.example.net."
  dns_zone_name = "example-net"
  relay_config  = file("${path.module}/config.yaml")
  min_replicas  = 3
}

output "endpoint_host" {
  value = module.relay.endpoint_host
}

output "relay_key_secret_id" {
  value = module.relay.relay_key_secret_id
}
