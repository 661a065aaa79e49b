# ShadowMesh relays on AWS (spec "Cloud Provider Integration / AWS"): VPC 10.0.0.0/16 with public subnets
# for relays and the ALB and a private management subnet, an ALB (WebSockets, idle timeout 1 h, health
# check /healthz on the metrics port), Route53, the relay key in Secrets Manager encrypted with a KMS key,
# an autoscaling group (spot + on-demand base, CPU target tracking), S3 for configuration, CloudWatch logs.
# The secret's VALUE (encrypted device key + passphrase) is put by the operator (docs/runbook.md), never
# through Terraform state.

locals {
  tags = merge({ "app" = "shadowmesh-relay", "managed-by" = "terraform" }, var.tags)
}

data "aws_caller_identity" "current" {}

# ---- network ------------------------------------------------------------------------------------------
resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = var.name })
}

resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id # no rules: the default group allows nothing
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = local.tags
}

resource "aws_subnet" "public" {
  count             = length(var.public_subnet_cidrs)
  vpc_id            = aws_vpc.this.id
  cidr_block        = var.public_subnet_cidrs[count.index]
  availability_zone = var.availability_zones[count.index]
  tags              = merge(local.tags, { Name = "${var.name}-public-${count.index}" })
}

resource "aws_subnet" "management" {
  vpc_id            = aws_vpc.this.id
  cidr_block        = var.private_subnet_cidr
  availability_zone = var.availability_zones[0]
  tags              = merge(local.tags, { Name = "${var.name}-management" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
  tags = local.tags
}

resource "aws_route_table_association" "public" {
  count          = length(aws_subnet.public)
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/shadowmesh/${var.name}"
  retention_in_days = 365 # spec "Logging Strategy": 1 year for security
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_flow_log" "this" {
  vpc_id               = aws_vpc.this.id
  traffic_type         = "REJECT"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.this.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
}

# ---- firewall -----------------------------------------------------------------------------------------
resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "WebSocket clients to the ALB (HTTPS only)"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  #checkov:skip=CKV_AWS_260:devices connect from anywhere: the relay is a public service (HTTPS 443 only)
  security_group_id = aws_security_group.alb.id
  description       = "devices: WebSocket over TLS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_relays" {
  security_group_id            = aws_security_group.alb.id
  description                  = "ALB to the relays' listener and health check"
  referenced_security_group_id = aws_security_group.relay.id
  ip_protocol                  = "tcp"
  from_port                    = var.relay_port
  to_port                      = var.metrics_port
}

resource "aws_security_group" "relay" {
  name        = "${var.name}-relay"
  description = "Relays: WebSocket and health from the ALB, metrics from management"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "relay_ws" {
  security_group_id            = aws_security_group.relay.id
  description                  = "ALB to the relay listener"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.relay_port
  to_port                      = var.relay_port
}

resource "aws_vpc_security_group_ingress_rule" "relay_health" {
  security_group_id            = aws_security_group.relay.id
  description                  = "ALB health check on /healthz"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.metrics_port
  to_port                      = var.metrics_port
}

resource "aws_vpc_security_group_ingress_rule" "relay_metrics" {
  security_group_id = aws_security_group.relay.id
  description       = "Prometheus in the management subnet"
  cidr_ipv4         = var.private_subnet_cidr
  ip_protocol       = "tcp"
  from_port         = var.metrics_port
  to_port           = var.metrics_port
}

resource "aws_vpc_security_group_egress_rule" "relay_https" {
  security_group_id = aws_security_group.relay.id
  description       = "chain RPC, Secrets Manager, image registry (HTTPS)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# ---- keys ---------------------------------------------------------------------------------------------
resource "aws_kms_key" "this" {
  description         = "${var.name}: relay key secret, logs, configuration bucket"
  enable_key_rotation = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Sid = "Account", Effect = "Allow", Action = "kms:*", Resource = "*",
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" } },
      { Sid = "Logs", Effect = "Allow", Resource = "*",
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
      Principal = { Service = "logs.amazonaws.com" } },
    ]
  })
  tags = local.tags
}

resource "aws_secretsmanager_secret" "relay_key" {
  #checkov:skip=CKV2_AWS_57:the relay key is a registered on-chain identity; rotation = re-registration (docs/runbook.md)
  name        = "${var.name}/relay-key"
  description = "Encrypted ShadowMesh device key of the relay and its passphrase (JSON: device_key, passphrase)"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

# ---- configuration bucket -----------------------------------------------------------------------------
resource "aws_s3_bucket" "config" {
  #checkov:skip=CKV_AWS_144:one-region deployment; the config is also in version control
  #checkov:skip=CKV_AWS_18:access logging of a config bucket read by the relays only: CloudTrail covers it
  #checkov:skip=CKV2_AWS_62:no consumer of bucket events
  #checkov:skip=CKV2_AWS_61:configuration objects are small and versioned; no lifecycle needed
  bucket_prefix = "${var.name}-config-"
  tags          = local.tags
}

resource "aws_s3_bucket_versioning" "config" {
  bucket = aws_s3_bucket.config.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "config" {
  bucket = aws_s3_bucket.config.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
  }
}

resource "aws_s3_bucket_public_access_block" "config" {
  bucket                  = aws_s3_bucket.config.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_object" "config" {
  bucket     = aws_s3_bucket.config.id
  key        = "config.yaml"
  content    = var.relay_config
  kms_key_id = aws_kms_key.this.arn
}

# ---- identity of the instances ------------------------------------------------------------------------
resource "aws_iam_role" "relay" {
  name_prefix = "${var.name}-"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "relay" {
  role = aws_iam_role.relay.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = ["secretsmanager:GetSecretValue"], Resource = aws_secretsmanager_secret.relay_key.arn },
      { Effect = "Allow", Action = ["kms:Decrypt"], Resource = aws_kms_key.this.arn },
      { Effect = "Allow", Action = ["s3:GetObject"], Resource = "${aws_s3_bucket.config.arn}/config.yaml" },
      { Effect = "Allow", Action = ["logs:CreateLogStream", "logs:PutLogEvents"], Resource = "${aws_cloudwatch_log_group.this.arn}:*" },
    ]
  })
}

resource "aws_iam_instance_profile" "relay" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.relay.name
}

resource "aws_iam_role" "flow_logs" {
  name_prefix = "${var.name}-flow-"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "vpc-flow-logs.amazonaws.com" } }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy" "flow_logs" {
  role = aws_iam_role.flow_logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{ Effect = "Allow", Resource = "${aws_cloudwatch_log_group.this.arn}:*",
    Action = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"] }]
  })
}

# ---- relays -------------------------------------------------------------------------------------------
resource "aws_launch_template" "relay" {
  name_prefix            = "${var.name}-"
  image_id               = var.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [aws_security_group.relay.id]
  ebs_optimized          = true
  iam_instance_profile {
    arn = aws_iam_instance_profile.relay.arn
  }
  metadata_options {
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
    http_endpoint               = "enabled"
  }
  monitoring {
    enabled = true
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 20
      encrypted   = true
      kms_key_id  = aws_kms_key.this.arn
    }
  }
  user_data = base64encode(templatefile("${path.module}/user_data.sh.tftpl", {
    image        = var.image
    secret_arn   = aws_secretsmanager_secret.relay_key.arn
    config_s3    = "s3://${aws_s3_bucket.config.id}/config.yaml"
    relay_port   = var.relay_port
    metrics_port = var.metrics_port
  }))
  tag_specifications {
    resource_type = "instance"
    tags          = local.tags
  }
}

resource "aws_autoscaling_group" "relay" {
  name_prefix         = "${var.name}-"
  min_size            = var.min_size
  max_size            = var.max_size
  vpc_zone_identifier = aws_subnet.public[*].id
  target_group_arns   = [aws_lb_target_group.relay.arn]
  health_check_type   = "ELB"
  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.use_spot ? var.min_on_demand : var.max_size
      on_demand_percentage_above_base_capacity = var.use_spot ? 0 : 100
      spot_allocation_strategy                 = "price-capacity-optimized"
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.relay.id
        version            = "$Latest"
      }
    }
  }
  dynamic "tag" {
    for_each = local.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

resource "aws_autoscaling_policy" "cpu" {
  name                   = "${var.name}-cpu"
  autoscaling_group_name = aws_autoscaling_group.relay.name
  policy_type            = "TargetTrackingScaling"
  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.cpu_target_percent
  }
}

# ---- load balancer and DNS ----------------------------------------------------------------------------
resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:access logs need a log bucket per account/region: enable with the account's bucket
  #checkov:skip=CKV2_AWS_28:WAF in front of an opaque WebSocket tunnel inspects nothing useful; rate limits are in the relay
  name                       = substr(var.name, 0, 32)
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = aws_subnet.public[*].id
  idle_timeout               = 3600 # seconds: WebSocket links stay open (pings every 5-20 s)
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  tags                       = local.tags
}

resource "aws_lb_target_group" "relay" {
  name_prefix          = "smr-"
  port                 = var.relay_port
  protocol             = "HTTP"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30
  health_check {
    path     = "/healthz"
    port     = tostring(var.metrics_port)
    protocol = "HTTP"
    interval = 10
    matcher  = "200"
  }
  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.relay.arn
  }
}

resource "aws_route53_record" "relay" {
  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"
  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}
