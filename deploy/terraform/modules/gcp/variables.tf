variable "name" {
  description = "Name prefix of every resource."
  type        = string
}

variable "project" {
  description = "GCP project id."
  type        = string
}

variable "region" {
  description = "Region of the relays (e.g. europe-west3)."
  type        = string
}

variable "relay_subnet_cidr" {
  description = "Subnet of the relays (spec: 10.0.1.0/24)."
  type        = string
  default     = "10.0.1.0/24"
}

variable "management_subnet_cidr" {
  description = "Management subnet (spec: 10.0.10.0/24): Prometheus reaches the metrics port from here."
  type        = string
  default     = "10.0.10.0/24"
}

variable "machine_type" {
  description = "Compute Engine machine type (spec: e2-medium or better)."
  type        = string
  default     = "e2-medium"
}

variable "source_image" {
  description = "Boot image with podman (e.g. debian-cloud/debian-12)."
  type        = string
  default     = "debian-cloud/debian-12"
}

variable "image" {
  description = "Container image of the relay (deploy/Dockerfile), pinned by digest."
  type        = string
}

variable "preemptible" {
  description = "Run relays on Spot VMs (spec \"Cost Optimization\": preemptible)."
  type        = bool
  default     = true
}

variable "min_replicas" {
  description = "Fewest relays."
  type        = number
  default     = 2
}

variable "max_replicas" {
  description = "Most relays."
  type        = number
  default     = 10
}

variable "cpu_target" {
  description = "Average CPU utilisation (0-1) the autoscaler keeps."
  type        = number
  default     = 0.7
}

variable "relay_port" {
  description = "TCP port of the relay's WebSocket listener."
  type        = number
  default     = 8443
}

variable "metrics_port" {
  description = "TCP port of the relay's metrics, /healthz and /livez."
  type        = number
  default     = 9464
}

variable "domain_name" {
  description = "DNS name devices dial (with a trailing dot for Cloud DNS, e.g. relay.example.net.)."
  type        = string
}

variable "dns_zone_name" {
  description = "Cloud DNS managed zone of domain_name."
  type        = string
}

variable "relay_config" {
  description = "The relay's config.yaml; holds no secret."
  type        = string
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}
