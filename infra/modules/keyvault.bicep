// Key Vault (RBAC authorization) holding the MongoDB connection string. The function app reads it
// through a Key Vault reference resolved with its user-assigned identity.

@description('Name of the Key Vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the secret holding the MongoDB URI.')
param mongoUriSecretName string

@description('MongoDB connection string. Empty: the secret is not written by this deployment (set it with `az keyvault secret set` instead).')
@secure()
param mongoUri string = ''

@description('Principal id of the managed identity the function app runs as.')
param principalId string

@description('Resource id of the Log Analytics workspace that receives the AuditEvent log.')
param workspaceId string

@description('default: create the vault (or update it). recover: restore the soft-deleted vault of this name, with its secrets (after the resource group was deleted; see docs/deploy.md).')
@allowed([
  'default'
  'recover'
])
param createMode string = 'default'

@description('Refuse every network but the subnets and address ranges below (networkAcls defaultAction Deny).')
param denyPublicNetwork bool = false

@description('Subnets allowed in (service endpoint Microsoft.KeyVault on each), e.g. the app\'s integration subnet.')
param allowedSubnetIds array = []

@description('Public IP addresses or CIDR ranges allowed in, e.g. the operator who writes the secret.')
param allowedIpRanges array = []

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: The default action is the denyPublicNetwork parameter: Deny in prod.bicepparam (only the app's subnet, through a service endpoint, and allowedIpRanges get in; asserted by tests/infra), Allow in dev. Access is RBAC only either way.
  name: name
  location: location
  tags: tags
  properties: {
    createMode: createMode
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // A deleted vault or secret stays recoverable for the whole retention (cannot be turned off).
    enablePurgeProtection: true
    // Enabled, so that the rules below apply; with denyPublicNetwork only they get in. The app
    // resolves its Key Vault reference through its VNet (vnetRouteAllEnabled).
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: denyPublicNetwork ? 'Deny' : 'Allow'
      virtualNetworkRules: [for subnetId in allowedSubnetIds: {
        id: subnetId
        ignoreMissingVnetServiceEndpoint: false
      }]
      ipRules: [for range in allowedIpRanges: {
        value: range
      }]
    }
  }
}

resource mongoUriSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(mongoUri)) {
  // checkov:skip=CKV_AZURE_41: An expiry date would make the app's Key Vault reference fail on that date and stop the pipeline; the URI is rotated by adding a secret version (docs/deploy.md).
  // checkov:skip=CKV_AZURE_114: False positive: contentType is set below; checkov does not read the properties of a conditional (if) resource.
  parent: vault
  name: mongoUriSecretName
  properties: {
    value: mongoUri
    contentType: 'text/plain; mongodb-connection-string'
  }
}

// Read secret values only; no management rights on the vault.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
  }
}

// AuditEvent: every read of a secret, by whom; the only record of who read mongo-uri.
resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output vaultUri string = vault.properties.vaultUri
// Versionless secret URI: the app picks up a new secret version on its next refresh or restart.
output mongoUriSecretUri string = '${vault.properties.vaultUri}secrets/${mongoUriSecretName}'
