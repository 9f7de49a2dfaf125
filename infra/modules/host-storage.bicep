// Storage account for the Functions host: timer locks and host state (blob, through the
// identity), and the Azure Files content share that an Elastic Premium plan mounts as the app's
// file system. The content share is the one consumer that needs the account key (see
// docs/deploy.md, "The content-share exception"), so this is the only account of the three that
// keeps shared-key access; the lake and the checkpoint table live in accounts that disable it.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Name of the Azure Files share the Premium plan uses for the app content.')
param contentShareName string

@description('Principal id of the managed identity the function app runs as.')
param principalId string

@description('Resource id of the Log Analytics workspace that receives the data-plane logs.')
param workspaceId string

var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var dataPlaneLogs = [
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

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: An Elastic Premium app mounts its content share over the public endpoint unless the account gets private endpoints and the content share is routed through the VNet; out of scope here, see docs/deploy.md.
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: the public endpoint stays enabled, anonymous blob access is disabled.
  // checkov:skip=CKV_AZURE_206: Holds only host state (timer locks, keys) and the deployed package, all rebuilt by a redeploy: LRS is enough.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Required by the content share (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING takes only a key).
    allowSharedKeyAccess: true
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource contentShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = {
  parent: fileService
  name: contentShareName
  properties: {
    shareQuota: 100
  }
}

// The host keeps timer-trigger singleton locks (blob leases) and host keys in blobs:
// Storage Blob Data Owner is what the Functions host documents for AzureWebJobsStorage.
// The app uses only timer and HTTP triggers, so no queue role is granted.
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
  }
}

// The host writes its diagnostic events to a table in AzureWebJobsStorage: Storage Table Data
// Contributor is the other role Microsoft lists for an identity-based AzureWebJobsStorage.
resource hostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
  }
}

// Data-plane logs (who read, wrote or deleted what) of the services the host uses.
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: workspaceId
    logs: dataPlaneLogs
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: dataPlaneLogs
  }
}

resource fileDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: fileService
  properties: {
    workspaceId: workspaceId
    logs: dataPlaneLogs
  }
}

output id string = storage.id
output name string = storage.name
output contentShareName string = contentShare.name
