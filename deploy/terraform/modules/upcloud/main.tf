# ShadowMesh relays on UpCloud: a private SDN network for the relays (spec CIDR 10.0.1.0/24) behind a
# router, relay servers with a default-deny firewall, a Managed Load Balancer in HTTP mode (WebSockets;
# client/server timeouts 1 h; TLS with a dynamic certificate for domain_name) in front of them.
# UpCloud has no KMS, secret store, DNS or autoscaling service: the relay key is copied over SSH by the
# operator (docs/runbook.md), DNS is a CNAME at your provider (output lb_dns_name), scaling is `replicas`.

locals {
  labels = merge({ app = "shadowmesh-relay", managed-by = "terraform" }, var.labels)
}

resource "upcloud_router" "this" {
  name = var.name
}

resource "upcloud_network" "relays" {
  name   = "${var.name}-relays"
  zone   = var.zone
  router = upcloud_router.this.id
  ip_network {
    address = var.relay_network_cidr
    dhcp    = true
    family  = "IPv4"
  }
}

resource "upcloud_server" "relay" {
  count    = var.replicas
  hostname = "${var.name}-${count.index}"
  zone     = var.zone
  plan     = var.plan
  firewall = true
  labels   = local.labels
  metadata = true
  template {
    storage = var.template
    size    = 25
  }
  network_interface {
    type = "public" # egress to the chain RPC and image registry; inbound closed by the firewall
  }
  network_interface {
    type    = "private"
    network = upcloud_network.relays.id
  }
  login {
    user = "shadowmesh"
    keys = var.ssh_public_keys
  }
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    image        = var.image
    relay_port   = var.relay_port
    metrics_port = var.metrics_port
  })
}

resource "upcloud_firewall_rules" "relay" {
  count     = var.replicas
  server_id = upcloud_server.relay[count.index].id

  firewall_rule {
    direction              = "in"
    action                 = "accept"
    family                 = "IPv4"
    protocol               = "tcp"
    source_address_start   = cidrhost(var.relay_network_cidr, 0)
    source_address_end     = cidrhost(var.relay_network_cidr, -1)
    destination_port_start = tostring(var.relay_port)
    destination_port_end   = tostring(var.metrics_port)
    comment                = "load balancer to the relay listener and /healthz"
  }
  firewall_rule {
    direction              = "in"
    action                 = "accept"
    family                 = "IPv4"
    protocol               = "tcp"
    source_address_start   = cidrhost(var.management_cidr, 0)
    source_address_end     = cidrhost(var.management_cidr, -1)
    destination_port_start = tostring(var.metrics_port)
    destination_port_end   = tostring(var.metrics_port)
    comment                = "Prometheus"
  }
  firewall_rule {
    direction              = "in"
    action                 = "accept"
    family                 = "IPv4"
    protocol               = "tcp"
    source_address_start   = cidrhost(var.management_cidr, 0)
    source_address_end     = cidrhost(var.management_cidr, -1)
    destination_port_start = "22"
    destination_port_end   = "22"
    comment                = "operators (SSH from management only)"
  }
  firewall_rule {
    direction = "in"
    action    = "drop"
    comment   = "default deny"
  }
}

resource "upcloud_loadbalancer" "this" {
  name              = var.name
  zone              = var.zone
  plan              = "production-small"
  configured_status = "started"
  labels            = local.labels
  networks {
    name   = "public"
    type   = "public"
    family = "IPv4"
  }
  networks {
    name    = "relays"
    type    = "private"
    family  = "IPv4"
    network = upcloud_network.relays.id
  }
}

resource "upcloud_loadbalancer_backend" "relays" {
  loadbalancer = upcloud_loadbalancer.this.id
  name         = "relays"
  properties {
    timeout_server        = 3600 # seconds: WebSocket links stay open
    health_check_type      = "tcp"
    health_check_interval  = 10
    health_check_fall      = 3
    health_check_rise      = 2
  }
}

resource "upcloud_loadbalancer_static_backend_member" "relay" {
  count        = var.replicas
  backend      = upcloud_loadbalancer_backend.relays.id
  name         = "relay-${count.index}"
  ip           = upcloud_server.relay[count.index].network_interface[1].ip_address
  port         = var.relay_port
  weight       = 100
  max_sessions = 20000
  enabled      = true
}

resource "upcloud_loadbalancer_frontend" "https" {
  loadbalancer         = upcloud_loadbalancer.this.id
  name                 = "https"
  mode                 = "http"
  port                 = 443
  default_backend_name = upcloud_loadbalancer_backend.relays.name
  networks {
    name = "public"
  }
  properties {
    timeout_client = 3600 # seconds
    http2_enabled  = false # WebSocket upgrade over HTTP/1.1
  }
}

resource "upcloud_loadbalancer_dynamic_certificate_bundle" "this" {
  name      = var.name
  hostnames = [var.domain_name]
  key_type  = "ecdsa"
}

resource "upcloud_loadbalancer_frontend_tls_config" "this" {
  frontend           = upcloud_loadbalancer_frontend.https.id
  name               = "relay"
  certificate_bundle = upcloud_loadbalancer_dynamic_certificate_bundle.this.id
}
