// mongo-adls-bronze: Azure infrastructure for the MongoDB change stream -> ADLS Gen2 function app.
//
//   az deployment group create -g <rg> -p infra/env/dev.bicepparam     (Azure CLI)
//   azd up                                                             (Azure Developer CLI:
//                                                                       azure.yaml, main.parameters.json)
//
// See docs/deploy.md for the whole procedure, the roles granted and why, and the alerts.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Naming, location, tags
// ---------------------------------------------------------------------------------------------

@description('Short lowercase prefix (letters and digits) for every resource name.')
@minLength(2)
@maxLength(8)
param namePrefix string

@description('Environment name (dev, prod, or any azd environment name such as alice-dev): the environment tag, and, lowercased with _ and . as -, its first 12 characters are part of the resource names.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('Extra tags merged into the default ones.')
param tags object = {}

// ---------------------------------------------------------------------------------------------
// Hosting
// ---------------------------------------------------------------------------------------------

@description('Elastic Premium plan SKU.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Always-ready instances (minimum elastic instance count), at least 1.')
@minValue(1)
@maxValue(20)
param alwaysReadyInstances int = 1

@description('Pre-warmed instances.')
@minValue(1)
@maxValue(20)
param preWarmedInstances int = 1

@description('Maximum instances of the plan and app.')
@minValue(1)
@maxValue(100)
param maximumInstances int = 3

@description('Redundancy of the lake and checkpoint storage accounts.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param dataStorageSku string = 'Standard_LRS'

@description('Refuse instrumentation-key ingestion into Application Insights (Entra ID only; the app\'s identity holds Monitoring Metrics Publisher).')
param disableAppInsightsLocalAuth bool = false

@description('Days to keep logs in Log Analytics.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---------------------------------------------------------------------------------------------
// Network (optional VNet integration, e.g. to reach MongoDB Atlas over a private endpoint)
// ---------------------------------------------------------------------------------------------

@description('Create a VNet and integrate the function app with it (all outbound traffic routed through it).')
param enableVnetIntegration bool = false

@description('Address space of the VNet.')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Subnet delegated to Microsoft.Web/serverFarms for the app.')
param appSubnetPrefix string = '10.40.1.0/26'

@description('Subnet for private endpoints.')
param privateEndpointSubnetPrefix string = '10.40.2.0/27'

@description('With enableVnetIntegration: a NAT gateway with a static outbound IP for the app subnet (to allow-list in Atlas).')
param enableNatGateway bool = true

@description('Resource id of the MongoDB Atlas private link service; with enableVnetIntegration, creates a private endpoint to it. Empty: none.')
param atlasPrivateLinkServiceId string = ''

@description('Deny public network access by default on the lake, checkpoint and Key Vault; the app\'s subnet (service endpoints) and allowedIpRanges get in. Needs enableVnetIntegration.')
param denyPublicDataNetwork bool = false

@description('Public IP addresses or CIDR ranges allowed through denyPublicDataNetwork (the operator who writes the secret, the lake\'s readers).')
param allowedIpRanges array = []

// ---------------------------------------------------------------------------------------------
// MongoDB source
// ---------------------------------------------------------------------------------------------

@description('MongoDB connection string, stored as a Key Vault secret. Leave empty to set the secret yourself (az keyvault secret set); a redeploy without it keeps the existing secret.')
@secure()
param mongoUri string = ''

@description('Name of the Key Vault secret holding the MongoDB connection string.')
param mongoUriSecretName string = 'mongo-uri'

@description('recover: restore the soft-deleted vault of this name (after the resource group was deleted; purge protection keeps it 90 days). Once, then back to default.')
@allowed([
  'default'
  'recover'
])
param keyVaultCreateMode string = 'default'

@description('Any text: gives the Key Vault a new name instead of the one still held by a soft-deleted vault. Empty: the usual name.')
param keyVaultNameSeed string = ''

@description('Database to watch (MONGO_DB); empty, with mongoCollection empty, watches the whole deployment.')
param mongoDatabase string = ''

@description('Collection to watch (MONGO_COLL); empty watches the whole database. Needs mongoDatabase.')
param mongoCollection string = ''

@description('Extra change-stream pipeline stages as a JSON array (MONGO_PIPELINE).')
param mongoPipeline string = '[]'

@description('fullDocument option of the change stream (MONGO_FULL_DOC).')
@allowed([
  'default'
  'updateLookup'
  'whenAvailable'
  'required'
])
param mongoFullDocument string = 'updateLookup'

@description('fullDocumentBeforeChange option of the change stream (MONGO_FULL_DOC_BEFORE_CHANGE); pre-images must be enabled on the collection for whenAvailable to return them.')
@allowed([
  'off'
  'whenAvailable'
  'required'
])
param mongoFullDocumentBeforeChange string = 'whenAvailable'

// ---------------------------------------------------------------------------------------------
// Pipeline behaviour (app settings)
// ---------------------------------------------------------------------------------------------

@description('Lake file system (container) the files are written to (ADLS_FILESYSTEM).')
@minLength(3)
@maxLength(63)
param lakeFileSystemName string = 'bronze'

@description('Checkpoint table name (CHECKPOINT_TABLE): 3-63 letters and digits, starting with a letter.')
@minLength(3)
@maxLength(63)
param checkpointTableName string = 'changestreamcheckpoints'

@description('Name of this pipeline\'s checkpoint (PIPELINE_NAME); empty derives it from the watched scope.')
param pipelineName string = ''

@description('NCRONTAB schedule of the drain timer, six fields (DRAIN_SCHEDULE).')
param drainSchedule string = '0 */1 * * * *'

@description('Seconds one drain run may spend reading before it flushes and saves its position (DRAIN_BUDGET_SECONDS).')
@minValue(5)
@maxValue(3600)
param drainBudgetSeconds int = 45

@description('Where a pipeline with no saved position starts (START_AT): now, or an ISO-8601 time.')
param startAt string = 'now'

@description('Extended JSON mode of the written documents (JSON_MODE).')
@allowed([
  'relaxed'
  'canonical'
])
param jsonMode string = 'relaxed'

@description('Time window of one rolling file, dividing a day: 5m, 15m, 1h, 1d ... (ROLL_WINDOW).')
param rollWindow string = '1h'

@description('Size past which a rolling file gets a new part, e.g. 128MiB (ROLL_MAX_BYTES).')
param rollMaxBytes string = '128MiB'

@description('Bounds the events a run holds (read ahead, the batch being filled, the one being written), e.g. 64MiB (MAX_BUFFER_BYTES).')
param maxBufferBytes string = '64MiB'

@description('One JSON Lines file per folder and window, or one file per change event (FILE_LAYOUT).')
@allowed([
  'rolling'
  'per_event'
])
param fileLayout string = 'rolling'

@description('Files uploaded in parallel with FILE_LAYOUT=per_event, 1 to 256 (PER_EVENT_CONCURRENCY).')
@minValue(1)
@maxValue(256)
param perEventConcurrency int = 32

@description('What to do when the saved position has fallen off the oplog (ON_HISTORY_LOST).')
@allowed([
  'fail'
  'restart'
])
param onHistoryLost string = 'fail'

@description('Copy the documents that already exist: off, initial, or when_needed (also after lost history) (SNAPSHOT).')
@allowed([
  'off'
  'initial'
  'when_needed'
])
param snapshot string = 'off'

@description('Documents per snapshot chunk (SNAPSHOT_CHUNK_DOCS).')
@minValue(1)
param snapshotChunkDocs int = 5000
@description('How far the committed position must be past the end of a UTC day before its _SUCCESS markers are written, e.g. 1h (LATE_EVENT_GRACE).')
param lateEventGrace string = '1h'

@description('Position age, in seconds, above which the status endpoint answers 503 (STATUS_MAX_POSITION_AGE_SECONDS).')
@minValue(1)
param statusMaxPositionAgeSeconds int = 600

@description('Several pipelines in one app (PIPELINES): a JSON array of objects, each with its own PIPELINE_NAME and scope (MONGO_DB, MONGO_COLL, MONGO_PIPELINE) and optional per-stream overrides. Empty: one pipeline from the settings above. When set, leave mongoDatabase, mongoCollection, mongoPipeline and pipelineName at their defaults. See docs/operations.md.')
param pipelines string = ''

// ---------------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------------

@description('E-mail address for the alerts. Empty: the action group has no receiver.')
param alertEmail string = ''

@description('Lag, in seconds, of the lake behind MongoDB above which the lag alert fires.')
@minValue(60)
param alertLagSeconds int = 900

@description('Seconds since a pipeline\'s position was last saved above which the position-age alert fires.')
@minValue(120)
param alertPositionAgeSeconds int = 900

// ---------------------------------------------------------------------------------------------
// Azure Developer CLI
// ---------------------------------------------------------------------------------------------

@description('Name of the service in azure.yaml: the function app carries it as its azd-service-name tag.')
param azdServiceName string = 'drain'

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(subscription().id, resourceGroup().id, namePrefix, environmentName)
// Free-form environment names (azd) made fit for resource names.
var environmentSlug = take(toLower(replace(replace(environmentName, '_', '-'), '.', '-')), 12)
var baseName = '${namePrefix}-${environmentSlug}'
var defaultTags = {
  application: 'mongo-adls-bronze'
  environment: environmentName
}
var allTags = union(defaultTags, tags)

var names = {
  identity: 'id-${baseName}'
  workspace: 'log-${baseName}-${suffix}'
  appInsights: 'appi-${baseName}-${suffix}'
  hostStorage: toLower(take('st${namePrefix}h${suffix}', 24))
  lakeStorage: toLower(take('st${namePrefix}l${suffix}', 24))
  checkpointStorage: toLower(take('st${namePrefix}c${suffix}', 24))
  keyVault: toLower('kv-${namePrefix}-${take(empty(keyVaultNameSeed) ? suffix : uniqueString(suffix, keyVaultNameSeed), 11)}')
  vnet: 'vnet-${baseName}'
  plan: 'plan-${baseName}'
  functionApp: 'func-${baseName}-${suffix}'
  contentShare: toLower('func-${baseName}-${suffix}')
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    location: location
    tags: allTags
    retentionInDays: logRetentionDays
    disableLocalAuth: disableAppInsightsLocalAuth
    principalId: identity.outputs.principalId
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  params: {
    name: names.hostStorage
    location: location
    tags: allTags
    contentShareName: names.contentShare
    principalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

// The app's integration subnet, which the lake, checkpoint and vault network rules let in.
var dataSubnetIds = enableVnetIntegration ? [
  network.outputs.appSubnetId
] : []

module lake 'modules/lake.bicep' = {
  name: 'lake'
  params: {
    name: names.lakeStorage
    location: location
    tags: allTags
    fileSystemName: lakeFileSystemName
    skuName: dataStorageSku
    principalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    denyPublicNetwork: denyPublicDataNetwork
    allowedSubnetIds: dataSubnetIds
    allowedIpRanges: allowedIpRanges
  }
}

module checkpoints 'modules/checkpoints.bicep' = {
  name: 'checkpoints'
  params: {
    name: names.checkpointStorage
    location: location
    tags: allTags
    tableName: checkpointTableName
    skuName: dataStorageSku
    principalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    denyPublicNetwork: denyPublicDataNetwork
    allowedSubnetIds: dataSubnetIds
    allowedIpRanges: allowedIpRanges
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    name: names.keyVault
    location: location
    tags: allTags
    mongoUriSecretName: mongoUriSecretName
    mongoUri: mongoUri
    principalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    createMode: keyVaultCreateMode
    denyPublicNetwork: denyPublicDataNetwork
    allowedSubnetIds: dataSubnetIds
    allowedIpRanges: allowedIpRanges
  }
}

module network 'modules/network.bicep' = if (enableVnetIntegration) {
  name: 'network'
  params: {
    vnetName: names.vnet
    location: location
    tags: allTags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    atlasPrivateLinkServiceId: atlasPrivateLinkServiceId
    enableNatGateway: enableNatGateway
  }
}

// The app's own settings, one per name the app reads (shared/settings.py). Secrets are not
// here: MONGO_URI is a Key Vault reference, and the lake and the checkpoint table are reached
// with the managed identity, so no SAS, shared key or connection string is ever set.
var appSettings = {
  MONGO_URI: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.mongoUriSecretUri})'
  MONGO_DB: mongoDatabase
  MONGO_COLL: mongoCollection
  MONGO_PIPELINE: mongoPipeline
  MONGO_FULL_DOC: mongoFullDocument
  MONGO_FULL_DOC_BEFORE_CHANGE: mongoFullDocumentBeforeChange
  ADLS_ACCOUNT_URL: 'https://${lake.outputs.name}.dfs.${environment().suffixes.storage}'
  ADLS_FILESYSTEM: lake.outputs.fileSystemName
  CHECKPOINT_ACCOUNT_URL: 'https://${checkpoints.outputs.name}.table.${environment().suffixes.storage}'
  CHECKPOINT_TABLE: checkpoints.outputs.tableName
  PIPELINE_NAME: pipelineName
  DRAIN_SCHEDULE: drainSchedule
  DRAIN_BUDGET_SECONDS: string(drainBudgetSeconds)
  START_AT: startAt
  JSON_MODE: jsonMode
  ROLL_WINDOW: rollWindow
  ROLL_MAX_BYTES: rollMaxBytes
  MAX_BUFFER_BYTES: maxBufferBytes
  FILE_LAYOUT: fileLayout
  PER_EVENT_CONCURRENCY: string(perEventConcurrency)
  ON_HISTORY_LOST: onHistoryLost
  SNAPSHOT: snapshot
  SNAPSHOT_CHUNK_DOCS: string(snapshotChunkDocs)
  LATE_EVENT_GRACE: lateEventGrace
  STATUS_MAX_POSITION_AGE_SECONDS: string(statusMaxPositionAgeSeconds)
  PIPELINES: pipelines
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    planSku: planSku
    alwaysReadyInstances: alwaysReadyInstances
    preWarmedInstances: preWarmedInstances
    maximumInstances: maximumInstances
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageName: hostStorage.outputs.name
    contentShareName: hostStorage.outputs.contentShareName
    appInsightsConnectionString: monitoring.outputs.connectionString
    subnetId: enableVnetIntegration ? network.outputs.appSubnetId : ''
    appSettings: appSettings
    workspaceId: monitoring.outputs.workspaceId
    azdServiceName: azdServiceName
  }
  // No explicit dependsOn: appSettings reads outputs of the key-vault, lake and checkpoints
  // modules, which hold the identity's role assignments, so the app is created after them.
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    namePrefix: baseName
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmail: alertEmail
    lagThresholdSeconds: alertLagSeconds
    positionAgeThresholdSeconds: alertPositionAgeSeconds
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output identityClientId string = identity.outputs.clientId
output identityPrincipalId string = identity.outputs.principalId
output keyVaultName string = keyVault.outputs.name
output mongoUriSecretName string = mongoUriSecretName
output lakeAccountName string = lake.outputs.name
output lakeAccountUrl string = 'https://${lake.outputs.name}.dfs.${environment().suffixes.storage}'
output checkpointAccountName string = checkpoints.outputs.name
output hostStorageAccountName string = hostStorage.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
output natOutboundIp string = enableVnetIntegration ? network.outputs.natPublicIp : ''
output logAnalyticsWorkspaceId string = monitoring.outputs.workspaceId

// Read by the Azure Developer CLI (azd writes every output into the environment's .env).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_DRAIN_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
