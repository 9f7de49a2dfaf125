// Linux Elastic Premium plan and the Python function app. The app runs as a user-assigned
// identity; every Azure data-plane connection uses that identity except the Azure Files content
// share, which takes only an account key (see docs/deploy.md, "The content-share exception").
//
// One publish path: a remote build. `func azure functionapp publish --build remote` or `azd deploy`
// uploads the package (.funcignore) and the platform's build installs requirements.txt (exact pins)
// on its own Linux image. So SCM_DO_BUILD_DURING_DEPLOYMENT and ENABLE_ORYX_BUILD are set and
// WEBSITE_RUN_FROM_PACKAGE is not: Core Tools removes that setting on a remote build, and an
// infrastructure redeploy that put it back would leave the app on a stale package.

@description('Name of the function app (globally unique host name).')
param name string

@description('Name of the Elastic Premium plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Elastic Premium SKU.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Always-ready instances of the app (minimum elastic instance count); at least 1 so the minute timer never waits for a cold start.')
@minValue(1)
@maxValue(20)
param alwaysReadyInstances int = 1

@description('Pre-warmed instances kept ready above the always-ready ones.')
@minValue(1)
@maxValue(20)
param preWarmedInstances int = 1

@description('Maximum instances of the plan and the app. The drain timer is a singleton, so more instances only serve the status endpoint.')
@minValue(1)
@maxValue(100)
param maximumInstances int = 3

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Name of the host storage account (AzureWebJobsStorage and the content share).')
param hostStorageName string

@description('Name of the Azure Files content share in the host storage account.')
param contentShareName string

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Resource id of the subnet for VNet integration (delegated to Microsoft.Web/serverFarms). Empty: no VNet integration.')
param subnetId string = ''

@description('The app\'s own settings (name -> value); merged with the platform settings below.')
param appSettings object

@description('Resource id of the Log Analytics workspace that receives FunctionAppLogs.')
param workspaceId string

@description('azd service name (azure.yaml) this app is tagged with, so `azd deploy` finds it.')
param azdServiceName string = 'drain'

var vnetEnabled = !empty(subnetId)

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

// Platform settings. The content-share connection string is built here from listKeys(), so the
// key is never a parameter, an output or a value in a parameters file. (An array literal, not a
// loop: a for-expression may not iterate over a value that needs listKeys().)
var platformSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'python'
  }
  {
    name: 'AzureWebJobsStorage__accountName'
    value: hostStorage.name
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
    value: 'DefaultEndpointsProtocol=https;AccountName=${hostStorage.name};EndpointSuffix=${environment().suffixes.storage};AccountKey=${hostStorage.listKeys().keys[0].value}'
  }
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: contentShareName
  }
  // Remote build (see the top of this file): the platform installs requirements.txt.
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
  {
    name: 'ENABLE_ORYX_BUILD'
    value: 'true'
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  // Entra ID ingestion (the host and the app's exporter both read it), so Application Insights
  // can refuse instrumentation-key ingestion; the identity holds Monitoring Metrics Publisher.
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
]

// The app's own settings, from the appSettings object parameter.
var ownSettings = [for setting in items(appSettings): {
  name: setting.key
  value: setting.value
}]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy needs at least 3 always-running instances; the drain timer is a singleton, so it would triple the cost for no throughput. The saved position makes a restart on another instance lossless.
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: planSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumInstances
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: The status endpoint must be reachable by the monitoring that reads it; it requires a function key (authLevel function).
  // checkov:skip=CKV_AZURE_17: Callers authenticate with a function key; client certificates would add nothing for the one status endpoint.
  // checkov:skip=CKV_AZURE_212: The drain timer is a singleton (one instance runs it at a time); one always-ready plus one pre-warmed instance, and the platform replaces a failed instance.
  // checkov:skip=CKV_AZURE_213: The only HTTP endpoint (status) requires a function key, which the platform health check cannot send; alerts watch the drain runs instead.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    reserved: true
    httpsOnly: true
    clientAffinityEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: vnetEnabled ? subnetId : null
    vnetRouteAllEnabled: vnetEnabled
    siteConfig: {
      linuxFxVersion: 'Python|3.11'
      minimumElasticInstanceCount: alwaysReadyInstances
      preWarmedInstanceCount: preWarmedInstances
      functionAppScaleLimit: maximumInstances
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      use32BitWorkerProcess: false
      appSettings: concat(platformSettings, ownSettings)
    }
  }
}

// Publishing with the SCM (Kudu) and FTP sites' basic-auth credentials is refused: `func publish`,
// `azd deploy` and the Azure CLI deploy with an Entra ID token.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

// The host's and the worker's log lines (including every line the app logs) in Log Analytics.
resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output planId string = plan.id
