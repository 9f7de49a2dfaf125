// Alerts on the drain pipeline, evaluated on Application Insights data, and the action group that
// e-mails them. What each alert means and what to do: docs/deploy.md, "Alerts".

@description('Prefix for the alert and action group names.')
param namePrefix string

@description('Azure region of the alert rules.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Resource id of the Application Insights component the queries run on.')
param appInsightsId string

@description('E-mail address that receives the alerts. Empty: the action group has no receiver.')
param alertEmail string = ''

@description('Name of the timer function whose runs are watched.')
param drainFunctionName string = 'drain'

@description('Custom metric (or `name=value` log field) carrying the age in seconds of the saved change-stream position.')
param positionAgeMetricName string = 'position_age_seconds'

@description('Position age, in seconds, above which the lag alert fires.')
@minValue(60)
param positionAgeThresholdSeconds int = 900

@description('Failed drain runs within the window that fire the failure alert.')
@minValue(1)
param failedRunsThreshold int = 2

@description('Window, in minutes, with no successful drain run that fires the stalled alert.')
@minValue(5)
@maxValue(1440)
param stalledAfterMinutes int = 15

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-ag'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: take(replace('${namePrefix}ops', '-', ''), 12)
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operations'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Runs of the drain timer that ended in an exception (the Functions host logs each invocation
// as a request named after the function).
resource drainFailures 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-drain-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${namePrefix}: drain runs failing'
    description: 'The drain timer function failed ${failedRunsThreshold} or more times in 15 minutes.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'requests | where name == "${drainFunctionName}" and success == false'
          timeAggregation: 'Count'
          operator: 'GreaterThanOrEqual'
          threshold: failedRunsThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// No successful drain run at all: the app is stopped, cannot start, or the timer is not firing.
resource drainStalled 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-drain-stalled'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${namePrefix}: no successful drain run'
    description: 'No drain run succeeded in the last ${stalledAfterMinutes} minutes.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT${stalledAfterMinutes}M'
    criteria: {
      allOf: [
        {
          query: 'requests | where name == "${drainFunctionName}" and success == true'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Lag: the saved position is older than the threshold, so the lake is that far behind MongoDB.
// Reads the value from a custom metric or from a `position_age_seconds=<n>` field in a log line.
resource positionAge 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-position-age'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${namePrefix}: change-stream position too old'
    description: 'The saved change-stream position is older than ${positionAgeThresholdSeconds} seconds.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    criteria: {
      allOf: [
        {
          query: 'union isfuzzy=true (customMetrics | where name == "${positionAgeMetricName}" | project timestamp, age = todouble(valueMax)), (traces | where message has "${positionAgeMetricName}=" | project timestamp, age = todouble(extract(@"${positionAgeMetricName}=([0-9.]+)", 1, message))) | where isnotnull(age)'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'age'
          operator: 'GreaterThan'
          threshold: positionAgeThresholdSeconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
output alertRuleIds array = [
  drainFailures.id
  drainStalled.id
  positionAge.id
]
