# Example: three relays on AWS in eu-central-1 (docs/runbook.md "AWS"). terraform init && terraform apply
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }
}

provider "aws" {
  region = "eu-central-1"
}

module "relay" {
  source             = "../../modules/aws"
  name               = "shadowmesh-relay"
  availability_zones = ["eu-central-1a", "eu-central-1b"]
  ami_id             = "ami-0123456789abcdef0" # Debian 12 with podman (your own AMI)
  image              = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/shadowmesh-client@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  domain_name        = "relay.example.net"
  route53_zone_id    = "Z0123456789ABCDEFGHIJ"
  certificate_arn    = "arn:aws:acm:eu-central-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
  relay_config       = file("${path.module}/config.yaml")
  min_size           = 3
}

output "endpoint_host" {
  value = module.relay.endpoint_host
}

output "relay_key_secret_arn" {
  value = module.relay.relay_key_secret_arn
}
