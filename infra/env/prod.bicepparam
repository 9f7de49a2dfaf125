// Production environment.
//   az deployment group create -g <resource-group> -n mongo-adls-bronze -p infra/env/prod.bicepparam
// DEPLOY_MONGO_URI (read from the environment, never a command-line argument) writes the Key
// Vault secret; without it the secret is left as it is (docs/deploy.md).
using '../main.bicep'

param namePrefix = 'mab'
param environmentName = 'prod'
param tags = {
  costCenter: 'data-platform'
}

param planSku = 'EP1'
param alwaysReadyInstances = 1
param preWarmedInstances = 1
param maximumInstances = 3
param dataStorageSku = 'Standard_GZRS'
param logRetentionDays = 90

// Reach MongoDB Atlas from a static outbound IP (NAT gateway) or over a private endpoint.
param enableVnetIntegration = true
param enableNatGateway = true
param atlasPrivateLinkServiceId = readEnvironmentVariable('DEPLOY_ATLAS_PRIVATE_LINK_SERVICE_ID', '')
// The lake, checkpoint and vault refuse public networks: only the app's subnet (service endpoints)
// and these ranges get in. Add the address of whoever writes the secret or reads the lake.
param denyPublicDataNetwork = true
param allowedIpRanges = []

// Telemetry only with an Entra ID token (the app's identity is Monitoring Metrics Publisher).
param disableAppInsightsLocalAuth = true

param mongoUri = readEnvironmentVariable('DEPLOY_MONGO_URI', '')
// After deleting and recreating the resource group: DEPLOY_KEY_VAULT_CREATE_MODE=recover restores
// the soft-deleted vault once (docs/deploy.md, "Deploying again after deleting the resource group").
param keyVaultCreateMode = readEnvironmentVariable('DEPLOY_KEY_VAULT_CREATE_MODE', 'default')
// The source to watch: set these to your database (and collection, or '' for the whole database).
param mongoDatabase = 'app'
param mongoCollection = ''
param mongoPipeline = '[]'
param mongoFullDocument = 'updateLookup'
param mongoFullDocumentBeforeChange = 'whenAvailable'

param lakeFileSystemName = 'bronze'
param checkpointTableName = 'changestreamcheckpoints'
param drainSchedule = '0 */1 * * * *'
param drainBudgetSeconds = 45
param startAt = 'now'
param rollWindow = '1h'
param onHistoryLost = 'fail'
param statusMaxPositionAgeSeconds = 600

param alertEmail = readEnvironmentVariable('DEPLOY_ALERT_EMAIL', '')
param alertLagSeconds = 900
