variable "name" {
  description = "Name prefix of every resource."
  type        = string
}

variable "location" {
  description = "Azure region (e.g. westeurope)."
  type        = string
}

variable "vnet_cidr" {
  description = "VNet address space (spec: 10.0.0.0/16)."
  type        = string
  default     = "10.0.0.0/16"
}

variable "relay_subnet_cidr" {
  description = "Subnet of the relays (spec: 10.0.1.0/24)."
  type        = string
  default     = "10.0.1.0/24"
}

variable "gateway_subnet_cidr" {
  description = "Subnet of the Application Gateway (a dedicated subnet is required)."
  type        = string
  default     = "10.0.2.0/24"
}

variable "management_subnet_cidr" {
  description = "Management subnet (spec: 10.0.10.0/24): Prometheus reaches the metrics port from here."
  type        = string
  default     = "10.0.10.0/24"
}

variable "vm_size" {
  description = "VM size of a relay (spec: Standard_B2s or better)."
  type        = string
  default     = "Standard_B2s"
}

variable "image" {
  description = "Container image of the relay (deploy/Dockerfile), pinned by digest."
  type        = string
}

variable "admin_ssh_public_key" {
  description = "SSH public key of the relays' admin user (password login is disabled)."
  type        = string
}

variable "use_spot" {
  description = "Run relays on Spot VMs (spec \"Cost Optimization\")."
  type        = bool
  default     = true
}

variable "min_instances" {
  description = "Fewest relays."
  type        = number
  default     = 2
}

variable "max_instances" {
  description = "Most relays."
  type        = number
  default     = 10
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
  description = "Record name devices dial, relative to the DNS zone (e.g. relay)."
  type        = string
}

variable "dns_zone_name" {
  description = "Azure DNS zone (e.g. example.net) in dns_zone_resource_group."
  type        = string
}

variable "dns_zone_resource_group" {
  description = "Resource group of the DNS zone."
  type        = string
}

variable "tls_certificate_secret_id" {
  description = "Key Vault secret id of the PFX certificate the Application Gateway serves."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
