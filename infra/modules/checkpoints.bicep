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

@description('Resource id of the Log Analytics workspace that receives the data-plane logs.')
param workspaceId string

@description('Refuse every network but the subnets and address ranges below (networkAcls defaultAction Deny).')
param denyPublicNetwork bool = false

@description('Subnets allowed in (service endpoint Microsoft.Storage on each), e.g. the app\'s integration subnet.')
param allowedSubnetIds array = []

@description('Public IP addresses or CIDR ranges allowed in, e.g. an operator\'s address.')
param allowedIpRanges array = []

var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
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

// Data-plane logs of the checkpoint table: every read and write of the position.
resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
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

output id string = storage.id
output name string = storage.name
output tableEndpoint string = storage.properties.primaryEndpoints.table
output tableName string = table.name
