// ADLS Gen2 account (hierarchical namespace) holding only the lake, and the file system the app
// writes the bronze JSON Lines files to. Shared keys are disabled: the app reaches the lake with
// its managed identity through the dfs endpoint.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the lake file system (blob container).')
@minLength(3)
@maxLength(63)
param fileSystemName string

@description('Redundancy of the lake account.')
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

@description('Resource id of the Log Analytics workspace that receives the data-plane logs.')
param workspaceId string

@description('Refuse every network but the subnets and address ranges below (networkAcls defaultAction Deny).')
param denyPublicNetwork bool = false

@description('Subnets allowed in (service endpoint Microsoft.Storage on each), e.g. the app\'s integration subnet.')
param allowedSubnetIds array = []

@description('Public IP addresses or CIDR ranges allowed in, e.g. the readers of the lake.')
param allowedIpRanges array = []

var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: The default action is the denyPublicNetwork parameter: Deny in prod.bicepparam (only the app's subnet, through a service endpoint, and allowedIpRanges get in; asserted by tests/infra), Allow in dev. Access is Entra ID only (shared keys disabled) either way.
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: public network access stays enabled so the network rules apply; with denyPublicNetwork they refuse everything else.
  // checkov:skip=CKV_AZURE_206: Redundancy is the dataStorageSku parameter; LRS by default for dev, prod.bicepparam sets a geo-zone-redundant SKU (asserted by tests/infra).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    isHnsEnabled: true
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    // Enabled, so that the rules below apply; with denyPublicNetwork only they get in.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: denyPublicNetwork ? 'Deny' : 'Allow'
      virtualNetworkRules: [for subnetId in allowedSubnetIds: {
        id: subnetId
        action: 'Allow'
      }]
      ipRules: [for range in allowedIpRanges: {
        value: range
        action: 'Allow'
      }]
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: lake
  name: 'default'
  properties: {
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource fileSystem 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: fileSystemName
  properties: {
    publicAccess: 'None'
  }
}

// Least privilege: read/write data in the one file system, nothing else in the account.
// (The file system is created here, so the app never needs to create it.)
resource lakeContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(fileSystem.id, principalId, storageBlobDataContributorRoleId)
  scope: fileSystem
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
  }
}

// Data-plane logs of the lake (the dfs endpoint is logged with the blob service).
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

output id string = lake.id
output name string = lake.name
output dfsEndpoint string = lake.properties.primaryEndpoints.dfs
output fileSystemName string = fileSystem.name
