variable "name" {
  description = "Name prefix of every resource."
  type        = string
}

variable "zone" {
  description = "UpCloud zone (e.g. de-fra1)."
  type        = string
}

variable "relay_network_cidr" {
  description = "Private SDN network of the relays (spec: 10.0.1.0/24)."
  type        = string
  default     = "10.0.1.0/24"
}

variable "management_cidr" {
  description = "Management network (spec: 10.0.10.0/24): Prometheus reaches the metrics port from here."
  type        = string
  default     = "10.0.10.0/24"
}

variable "plan" {
  description = "Server plan of a relay (2 cores / 4 GB, like t3.medium)."
  type        = string
  default     = "2xCPU-4GB"
}

variable "template" {
  description = "OS template with podman (Debian 12)."
  type        = string
  default     = "Debian GNU/Linux 12 (Bookworm)"
}

variable "image" {
  description = "Container image of the relay (deploy/Dockerfile), pinned by digest."
  type        = string
}

variable "replicas" {
  description = "Relay servers (UpCloud has no autoscaling group: change and apply to scale)."
  type        = number
  default     = 2
}

variable "ssh_public_keys" {
  description = "SSH keys of the operator (the relay key is copied over SSH, never through Terraform state)."
  type        = list(string)
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
  description = "DNS name devices dial (a CNAME to the load balancer at your DNS provider: UpCloud has no DNS service)."
  type        = string
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}
