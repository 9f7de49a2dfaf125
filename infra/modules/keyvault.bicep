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

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: The app resolves its Key Vault reference over the public endpoint unless VNet integration with a vault private endpoint is set up; access is RBAC only (Key Vault Secrets User for the app's identity). See docs/deploy.md.
  // checkov:skip=CKV_AZURE_189: Same as CKV_AZURE_109.
  name: name
  location: location
  tags: tags
  properties: {
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
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
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

output id string = vault.id
output name string = vault.name
output vaultUri string = vault.properties.vaultUri
// Versionless secret URI: the app picks up a new secret version on its next refresh or restart.
output mongoUriSecretUri string = '${vault.properties.vaultUri}secrets/${mongoUriSecretName}'
