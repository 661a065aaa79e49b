variable "name" {
  description = "Name prefix of every resource (e.g. shadowmesh-relay)."
  type        = string
}

variable "vpc_cidr" {
  description = "VPC CIDR (spec \"Cloud Provider Integration\": 10.0.0.0/16)."
  type        = string
  default     = "10.0.0.0/16"
}

variable "public_subnet_cidrs" {
  description = "Public subnets for the relays and the ALB, one per availability zone (spec: 10.0.1.0/24; an ALB needs two zones)."
  type        = list(string)
  default     = ["10.0.1.0/24", "10.0.2.0/24"]
}

variable "private_subnet_cidr" {
  description = "Management subnet (spec: 10.0.10.0/24): Prometheus and operators reach the metrics port from here."
  type        = string
  default     = "10.0.10.0/24"
}

variable "availability_zones" {
  description = "Availability zones of the public subnets, in the same order."
  type        = list(string)
}

variable "instance_type" {
  description = "EC2 instance type of a relay (spec: t3.medium or better)."
  type        = string
  default     = "t3.medium"
}

variable "ami_id" {
  description = "AMI with podman (e.g. Debian 12); the relay runs as the container image."
  type        = string
}

variable "image" {
  description = "Container image of the relay (deploy/Dockerfile), pinned by digest."
  type        = string
}

variable "use_spot" {
  description = "Run relays on spot instances (spec \"Cost Optimization\"); on-demand base capacity stays at min_on_demand."
  type        = bool
  default     = true
}

variable "min_on_demand" {
  description = "Relays kept on on-demand capacity when use_spot is true."
  type        = number
  default     = 1
}

variable "min_size" {
  description = "Fewest relays."
  type        = number
  default     = 2
}

variable "max_size" {
  description = "Most relays."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Average CPU the autoscaler keeps the relays at (one relay process per core)."
  type        = number
  default     = 70
}

variable "relay_port" {
  description = "TCP port of the relay's WebSocket listener (behind the ALB)."
  type        = number
  default     = 8443
}

variable "metrics_port" {
  description = "TCP port of the relay's metrics, /healthz and /livez."
  type        = number
  default     = 9464
}

variable "domain_name" {
  description = "DNS name devices dial (the relay's registered endpoint host)."
  type        = string
}

variable "route53_zone_id" {
  description = "Route53 hosted zone of domain_name."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name (TLS ends at the ALB)."
  type        = string
}

variable "relay_config" {
  description = "The relay's config.yaml (shadowmesh_client/config.py); holds no secret."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
