# ShadowMesh relays on GCP (spec "Cloud Provider Integration / GCP"): VPC with the relay and management
# subnets, firewall rules (load balancer + health checks to the relays, management to metrics), a managed
# instance group of Spot VMs with CPU autoscaling, the global HTTPS load balancer (WebSockets; backend
# timeout 1 h; health check /healthz), Cloud DNS, the relay key in Secret Manager encrypted with Cloud KMS,
# the config in Cloud Storage. The secret's VALUE is added by the operator (docs/runbook.md).

locals {
  labels = merge({ app = "shadowmesh-relay", managed-by = "terraform" }, var.labels)
}

data "google_project" "this" {
  project_id = var.project
}

# ---- network and firewall -----------------------------------------------------------------------------
resource "google_compute_network" "this" {
  project                 = var.project
  name                    = var.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "relays" {
  project                  = var.project
  name                     = "${var.name}-relays"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.relay_subnet_cidr
  private_ip_google_access = true
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
  }
}

resource "google_compute_subnetwork" "management" {
  project                  = var.project
  name                     = "${var.name}-management"
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.management_subnet_cidr
  private_ip_google_access = true
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
  }
}

resource "google_compute_firewall" "lb_to_relays" {
  project       = var.project
  name          = "${var.name}-lb-to-relays"
  network       = google_compute_network.this.id
  source_ranges = ["130.211.0.0/22", "35.191.0.0/16"] # Google front ends and health checkers
  target_tags   = ["shadowmesh-relay"]
  allow {
    protocol = "tcp"
    ports    = [tostring(var.relay_port), tostring(var.metrics_port)]
  }
}

resource "google_compute_firewall" "management_to_metrics" {
  project       = var.project
  name          = "${var.name}-management-metrics"
  network       = google_compute_network.this.id
  source_ranges = [var.management_subnet_cidr]
  target_tags   = ["shadowmesh-relay"]
  allow {
    protocol = "tcp"
    ports    = [tostring(var.metrics_port)]
  }
}

resource "google_compute_router" "this" {
  project = var.project
  name    = var.name
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_router_nat" "this" {
  project                            = var.project
  name                               = var.name
  router                             = google_compute_router.this.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES" # relays reach the chain RPC and registries
  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# ---- keys and configuration ---------------------------------------------------------------------------
resource "google_kms_key_ring" "this" {
  project  = var.project
  name     = var.name
  location = var.region
}

resource "google_kms_crypto_key" "this" {
  name            = "${var.name}-secrets"
  key_ring        = google_kms_key_ring.this.id
  rotation_period = "7776000s" # 90 days
  lifecycle {
    prevent_destroy = true
  }
}

resource "google_kms_crypto_key_iam_member" "secret_manager" {
  crypto_key_id = google_kms_crypto_key.this.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
}

resource "google_secret_manager_secret" "relay_key" {
  project   = var.project
  secret_id = "${var.name}-relay-key"
  labels    = local.labels
  replication {
    user_managed {
      replicas {
        location = var.region
        customer_managed_encryption {
          kms_key_name = google_kms_crypto_key.this.id
        }
      }
    }
  }
  depends_on = [google_kms_crypto_key_iam_member.secret_manager]
}

resource "google_storage_bucket" "config" {
  #checkov:skip=CKV_GCP_62:access logging of a config bucket read by the relays only: Cloud Audit Logs cover it
  project                     = var.project
  name                        = "${var.project}-${var.name}-config"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  labels = local.labels
}

resource "google_storage_bucket_object" "config" {
  bucket  = google_storage_bucket.config.name
  name    = "config.yaml"
  content = var.relay_config
}

resource "google_service_account" "relay" {
  project      = var.project
  account_id   = substr("${var.name}-relay", 0, 30)
  display_name = "ShadowMesh relay"
}

resource "google_secret_manager_secret_iam_member" "relay" {
  project   = var.project
  secret_id = google_secret_manager_secret.relay_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.relay.email}"
}

resource "google_storage_bucket_iam_member" "relay" {
  bucket = google_storage_bucket.config.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.relay.email}"
}

# ---- relays -------------------------------------------------------------------------------------------
resource "google_compute_instance_template" "relay" {
  project      = var.project
  name_prefix  = "${var.name}-"
  machine_type = var.machine_type
  tags         = ["shadowmesh-relay"]
  labels       = local.labels
  disk {
    source_image = var.source_image
    boot         = true
    disk_size_gb = 20
  }
  network_interface {
    subnetwork = google_compute_subnetwork.relays.id # no public address: egress through Cloud NAT
  }
  scheduling {
    preemptible                 = var.preemptible
    automatic_restart           = !var.preemptible
    provisioning_model          = var.preemptible ? "SPOT" : "STANDARD"
    instance_termination_action = var.preemptible ? "STOP" : null
  }
  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }
  metadata = {
    block-project-ssh-keys = true
    enable-oslogin         = true
    startup-script = templatefile("${path.module}/startup.sh.tftpl", {
      image        = var.image
      secret       = google_secret_manager_secret.relay_key.id
      config_gcs   = "gs://${google_storage_bucket.config.name}/config.yaml"
      relay_port   = var.relay_port
      metrics_port = var.metrics_port
    })
  }
  service_account {
    email  = google_service_account.relay.email
    scopes = ["cloud-platform"]
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_health_check" "relay" {
  project = var.project
  name    = "${var.name}-healthz"
  http_health_check {
    port         = var.metrics_port
    request_path = "/healthz"
  }
  check_interval_sec = 5
  timeout_sec        = 3
}

resource "google_compute_region_instance_group_manager" "relay" {
  project            = var.project
  name               = var.name
  region             = var.region
  base_instance_name = var.name
  version {
    instance_template = google_compute_instance_template.relay.id
  }
  named_port {
    name = "ws"
    port = var.relay_port
  }
  auto_healing_policies {
    health_check      = google_compute_health_check.relay.id
    initial_delay_sec = 120
  }
}

resource "google_compute_region_autoscaler" "relay" {
  project = var.project
  name    = var.name
  region  = var.region
  target  = google_compute_region_instance_group_manager.relay.id
  autoscaling_policy {
    min_replicas    = var.min_replicas
    max_replicas    = var.max_replicas
    cooldown_period = 120
    cpu_utilization {
      target = var.cpu_target
    }
  }
}

# ---- load balancer and DNS ----------------------------------------------------------------------------
resource "google_compute_backend_service" "relay" {
  project               = var.project
  name                  = var.name
  protocol              = "HTTP"
  port_name             = "ws"
  timeout_sec           = 3600 # seconds: a WebSocket may stay open this long
  health_checks         = [google_compute_health_check.relay.id]
  load_balancing_scheme = "EXTERNAL_MANAGED"
  log_config {
    enable = true
  }
  backend {
    group = google_compute_region_instance_group_manager.relay.instance_group
  }
}

resource "google_compute_url_map" "relay" {
  project         = var.project
  name            = var.name
  default_service = google_compute_backend_service.relay.id
}

resource "google_compute_managed_ssl_certificate" "relay" {
  project = var.project
  name    = var.name
  managed {
    domains = [var.domain_name]
  }
}

resource "google_compute_ssl_policy" "relay" {
  project         = var.project
  name            = var.name
  profile         = "RESTRICTED"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "relay" {
  project          = var.project
  name             = var.name
  url_map          = google_compute_url_map.relay.id
  ssl_certificates = [google_compute_managed_ssl_certificate.relay.id]
  ssl_policy       = google_compute_ssl_policy.relay.id
}

resource "google_compute_global_address" "relay" {
  project = var.project
  name    = var.name
}

resource "google_compute_global_forwarding_rule" "relay" {
  project               = var.project
  name                  = var.name
  target                = google_compute_target_https_proxy.relay.id
  ip_address            = google_compute_global_address.relay.address
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}

resource "google_dns_record_set" "relay" {
  project      = var.project
  managed_zone = var.dns_zone_name
  name         = var.domain_name
  type         = "A"
  ttl          = 300
  rrdatas      = [google_compute_global_address.relay.address]
}
