// Storage account holding only the checkpoint table (the change stream position). It is kept
// apart from the host storage account on purpose: the host account must allow shared keys for
// the Premium content share, and anyone holding that key could otherwise rewrite the position.
// This account disables shared keys, so only Entra ID principals with a table data role can.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the checkpoint table (3-63 letters and digits, starting with a letter).')
@minLength(3)
@maxLength(63)
param tableName string

@description('Redundancy of the checkpoint account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Principal id of the managed identity the function app runs as.')
param principalId string

var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: The function app reaches the table over its public endpoint (no storage private endpoint); access is Entra ID only (shared keys disabled) through the identity's table role. Private endpoints are the hardening step in docs/deploy.md.
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: the public endpoint stays enabled, anonymous and shared-key access are disabled.
  // checkov:skip=CKV_AZURE_206: Redundancy is the dataStorageSku parameter; LRS by default for dev, prod.bicepparam sets a geo-zone-redundant SKU (asserted by tests/infra).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource table 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: tableName
}

// Scoped to the account that holds the table: the account holds nothing else.
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
  }
}

output id string = storage.id
output name string = storage.name
output tableEndpoint string = storage.properties.primaryEndpoints.table
output tableName string = table.name
