# ShadowMesh relays on Azure (spec "Cloud Provider Integration / Azure"): VNet 10.0.0.0/16 with relay,
# gateway and management subnets and NSGs, an Application Gateway v2 (WebSockets on by default; request
# timeout 1 h; probe /healthz on the metrics port), a VM scale set (Spot optional, CPU autoscale), Azure DNS,
# the relay key in Key Vault (RBAC, purge protection), Log Analytics. The secret's VALUE is set by the
# operator (docs/runbook.md).

locals {
  tags = merge({ app = "shadowmesh-relay", managed-by = "terraform" }, var.tags)
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "this" {
  name     = var.name
  location = var.location
  tags     = local.tags
}

# ---- network ------------------------------------------------------------------------------------------
resource "azurerm_virtual_network" "this" {
  name                = var.name
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.vnet_cidr]
  tags                = local.tags
}

resource "azurerm_subnet" "relays" {
  name                 = "relays"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.relay_subnet_cidr]
}

resource "azurerm_subnet" "gateway" {
  name                 = "gateway"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.gateway_subnet_cidr]
}

resource "azurerm_subnet" "management" {
  name                 = "management"
  resource_group_name  = azurerm_resource_group.this.name
  virtual_network_name = azurerm_virtual_network.this.name
  address_prefixes     = [var.management_subnet_cidr]
}

resource "azurerm_network_security_group" "relays" {
  name                = "${var.name}-relays"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  security_rule {
    name                       = "gateway-to-relays"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = var.gateway_subnet_cidr
    source_port_range          = "*"
    destination_address_prefix = var.relay_subnet_cidr
    destination_port_ranges    = [tostring(var.relay_port), tostring(var.metrics_port)]
  }
  security_rule {
    name                       = "management-to-metrics"
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = var.management_subnet_cidr
    source_port_range          = "*"
    destination_address_prefix = var.relay_subnet_cidr
    destination_port_range     = tostring(var.metrics_port)
  }
  security_rule {
    name                       = "deny-other-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "relays" {
  subnet_id                 = azurerm_subnet.relays.id
  network_security_group_id = azurerm_network_security_group.relays.id
}

resource "azurerm_network_security_group" "gateway" {
  name                = "${var.name}-gateway"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  security_rule {
    name                       = "devices-https"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "Internet"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "443"
  }
  security_rule {
    name                       = "gateway-manager" # required by Application Gateway v2
    priority                   = 110
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "Tcp"
    source_address_prefix      = "GatewayManager"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "65200-65535"
  }
  security_rule {
    name                       = "azure-load-balancer"
    priority                   = 120
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = "AzureLoadBalancer"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "gateway" {
  subnet_id                 = azurerm_subnet.gateway.id
  network_security_group_id = azurerm_network_security_group.gateway.id
}

resource "azurerm_network_security_group" "management" {
  name                = "${var.name}-management"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  security_rule {
    name                       = "vnet-only"
    priority                   = 100
    direction                  = "Inbound"
    access                     = "Allow"
    protocol                   = "*"
    source_address_prefix      = "VirtualNetwork"
    source_port_range          = "*"
    destination_address_prefix = "VirtualNetwork"
    destination_port_range     = "*"
  }
  security_rule {
    name                       = "deny-other-inbound"
    priority                   = 4000
    direction                  = "Inbound"
    access                     = "Deny"
    protocol                   = "*"
    source_address_prefix      = "*"
    source_port_range          = "*"
    destination_address_prefix = "*"
    destination_port_range     = "*"
  }
}

resource "azurerm_subnet_network_security_group_association" "management" {
  subnet_id                 = azurerm_subnet.management.id
  network_security_group_id = azurerm_network_security_group.management.id
}

resource "azurerm_log_analytics_workspace" "this" {
  name                = var.name
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  retention_in_days   = 365 # spec "Logging Strategy": 1 year for security
  tags                = local.tags
}

# ---- key vault ----------------------------------------------------------------------------------------
resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_189:the relays read the key over the public endpoint; access is RBAC + their managed identity
  #checkov:skip=CKV_AZURE_109:relays read over the public endpoint (RBAC + managed identity); ACLs need a private endpoint per region
  #checkov:skip=CKV2_AZURE_32:no private endpoint: relays read over the public endpoint with RBAC + managed identity
  name                       = substr(replace("${var.name}kv", "-", ""), 0, 24)
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 30
  tags                       = local.tags
}

resource "azurerm_key_vault_secret" "relay_key" {
  #checkov:skip=CKV_AZURE_41:the relay key is a registered on-chain identity: no expiry (rotation = re-registration)
  name         = "relay-key"
  value        = "set-by-the-operator" # replaced out of band (docs/runbook.md); Terraform ignores later changes
  key_vault_id = azurerm_key_vault.this.id
  content_type = "application/json"
  lifecycle {
    ignore_changes = [value]
  }
}

resource "azurerm_user_assigned_identity" "relay" {
  name                = "${var.name}-relay"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_role_assignment" "relay_secrets" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.relay.principal_id
}

# ---- relays -------------------------------------------------------------------------------------------
resource "azurerm_linux_virtual_machine_scale_set" "relay" {
  name                            = var.name
  location                        = var.location
  resource_group_name             = azurerm_resource_group.this.name
  sku                             = var.vm_size
  instances                       = var.min_instances
  admin_username                  = "shadowmesh"
  disable_password_authentication = true
  encryption_at_host_enabled      = true
  priority                        = var.use_spot ? "Spot" : "Regular"
  eviction_policy                 = var.use_spot ? "Deallocate" : null
  upgrade_mode                    = "Rolling"
  tags                            = local.tags
  custom_data = base64encode(templatefile("${path.module}/cloud-init.yaml.tftpl", {
    image        = var.image
    vault_name   = azurerm_key_vault.this.name
    relay_port   = var.relay_port
    metrics_port = var.metrics_port
  }))

  admin_ssh_key {
    username   = "shadowmesh"
    public_key = var.admin_ssh_public_key
  }
  source_image_reference {
    publisher = "Debian"
    offer     = "debian-12"
    sku       = "12-gen2"
    version   = "latest"
  }
  os_disk {
    storage_account_type = "Standard_LRS"
    caching              = "ReadWrite"
  }
  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.relay.id]
  }
  network_interface {
    name    = "relay"
    primary = true
    ip_configuration {
      name                                         = "relay"
      primary                                      = true
      subnet_id                                    = azurerm_subnet.relays.id
      application_gateway_backend_address_pool_ids = [one(azurerm_application_gateway.this.backend_address_pool).id]
    }
  }
  rolling_upgrade_policy {
    max_batch_instance_percent              = 20
    max_unhealthy_instance_percent          = 20
    max_unhealthy_upgraded_instance_percent = 20
    pause_time_between_batches              = "PT30S"
  }
  automatic_instance_repair {
    enabled = true
  }
  extension {
    name                 = "health"
    publisher            = "Microsoft.ManagedServices"
    type                 = "ApplicationHealthLinux"
    type_handler_version = "1.0"
    settings             = jsonencode({ protocol = "http", port = var.metrics_port, requestPath = "/healthz" })
  }
}

resource "azurerm_monitor_autoscale_setting" "relay" {
  name                = var.name
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  target_resource_id  = azurerm_linux_virtual_machine_scale_set.relay.id
  profile {
    name = "cpu"
    capacity {
      default = var.min_instances
      minimum = var.min_instances
      maximum = var.max_instances
    }
    rule {
      metric_trigger {
        metric_name        = "Percentage CPU"
        metric_resource_id = azurerm_linux_virtual_machine_scale_set.relay.id
        time_grain         = "PT1M"
        statistic          = "Average"
        time_window        = "PT5M"
        time_aggregation   = "Average"
        operator           = "GreaterThan"
        threshold          = 70
      }
      scale_action {
        direction = "Increase"
        type      = "ChangeCount"
        value     = "1"
        cooldown  = "PT5M"
      }
    }
    rule {
      metric_trigger {
        metric_name        = "Percentage CPU"
        metric_resource_id = azurerm_linux_virtual_machine_scale_set.relay.id
        time_grain         = "PT1M"
        statistic          = "Average"
        time_window        = "PT10M"
        time_aggregation   = "Average"
        operator           = "LessThan"
        threshold          = 30
      }
      scale_action {
        direction = "Decrease"
        type      = "ChangeCount"
        value     = "1"
        cooldown  = "PT10M"
      }
    }
  }
}

# ---- application gateway and DNS ----------------------------------------------------------------------
resource "azurerm_public_ip" "gateway" {
  name                = "${var.name}-gateway"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  allocation_method   = "Static"
  sku                 = "Standard"
  zones               = ["1", "2", "3"]
  tags                = local.tags
}

resource "azurerm_user_assigned_identity" "gateway" {
  name                = "${var.name}-gateway"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
}

resource "azurerm_role_assignment" "gateway_certificate" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.gateway.principal_id
}

resource "azurerm_application_gateway" "this" {
  name                = var.name
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  zones               = ["1", "2", "3"]
  tags                = local.tags

  sku {
    name = "WAF_v2"
    tier = "WAF_v2"
  }
  autoscale_configuration {
    min_capacity = 1
    max_capacity = 10
  }
  waf_configuration {
    enabled          = true
    firewall_mode    = "Prevention"
    rule_set_version = "3.2"
  }
  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.gateway.id]
  }
  ssl_policy {
    policy_type = "Predefined"
    policy_name = "AppGwSslPolicy20220101S"
  }
  gateway_ip_configuration {
    name      = "gateway"
    subnet_id = azurerm_subnet.gateway.id
  }
  frontend_ip_configuration {
    name                 = "public"
    public_ip_address_id = azurerm_public_ip.gateway.id
  }
  frontend_port {
    name = "https"
    port = 443
  }
  ssl_certificate {
    name                = "relay"
    key_vault_secret_id = var.tls_certificate_secret_id
  }
  backend_address_pool {
    name = "relays"
  }
  probe {
    name                = "healthz"
    protocol            = "Http"
    host                = "127.0.0.1"
    path                = "/healthz"
    port                = var.metrics_port
    interval            = 10
    timeout             = 5
    unhealthy_threshold = 3
  }
  backend_http_settings {
    name                  = "relays"
    protocol              = "Http"
    port                  = var.relay_port
    cookie_based_affinity = "Disabled"
    request_timeout       = 3600 # seconds: WebSocket links stay open
    probe_name            = "healthz"
    connection_draining {
      enabled           = true
      drain_timeout_sec = 30
    }
  }
  http_listener {
    name                           = "https"
    frontend_ip_configuration_name = "public"
    frontend_port_name             = "https"
    protocol                       = "Https"
    ssl_certificate_name           = "relay"
  }
  request_routing_rule {
    name                       = "relays"
    priority                   = 100
    rule_type                  = "Basic"
    http_listener_name         = "https"
    backend_address_pool_name  = "relays"
    backend_http_settings_name = "relays"
  }
  depends_on = [azurerm_role_assignment.gateway_certificate]
}

resource "azurerm_dns_a_record" "relay" {
  name                = var.domain_name
  zone_name           = var.dns_zone_name
  resource_group_name = var.dns_zone_resource_group
  ttl                 = 300
  target_resource_id  = azurerm_public_ip.gateway.id
}
