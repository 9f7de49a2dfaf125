// Alerts on the drain pipeline, evaluated on Application Insights data, and the action group that
// e-mails them. What each alert means and what to do: docs/deploy.md, "Alerts".
//
// Run failures and stalls read the host's own request records of the timer function (they exist
// even when a run fails before any pipeline starts, e.g. on bad settings). Lag and position age
// read the app's OpenTelemetry metrics (shared/telemetry.py, table customMetrics), per pipeline:
// numbers with a name, not text parsed out of log lines.

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

@description('Metric (shared/telemetry.py) holding the lag, in seconds, of the last event written behind the end of the run.')
param lagMetric string = 'drain.lag'

@description('Metric (shared/telemetry.py) holding the seconds since a pipeline\'s position was last saved.')
param positionAgeMetric string = 'drain.position.age'

@description('Position age, in seconds, above which the position-age alert fires.')
@minValue(120)
param positionAgeThresholdSeconds int = 900

@description('Lag, in seconds, above which the lag alert fires.')
@minValue(60)
param lagThresholdSeconds int = 900

@description('Failed drain runs within the window that fire the failure alert.')
@minValue(1)
param failedRunsThreshold int = 2

@description('Window, in minutes, with no successful drain run that fires the stalled alert (a window size log alerts accept).')
@allowed([
  10
  15
  30
  45
  60
])
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

// Lag: a pipeline's last run left the lake more than the threshold behind MongoDB. A stopped
// drain is the stalled alert's job.
resource lag 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-lag'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${namePrefix}: lake behind MongoDB'
    description: 'A pipeline\'s ${lagMetric} metric was above ${lagThresholdSeconds} seconds.'
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
          query: 'customMetrics | where name == "${lagMetric}" | extend pipeline = tostring(customDimensions["pipeline"]), lag = todouble(valueMax) | project timestamp, pipeline, lag'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lag'
          dimensions: [
            {
              name: 'pipeline'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: lagThresholdSeconds
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

// Position age: a pipeline whose position has not been saved for too long, although runs go on
// (e.g. one pipeline of several keeps failing, or its runs write nothing they can commit).
resource positionAge 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-position-age'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: '${namePrefix}: position not saved'
    description: 'A pipeline\'s ${positionAgeMetric} metric was above ${positionAgeThresholdSeconds} seconds.'
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
          query: 'customMetrics | where name == "${positionAgeMetric}" | extend pipeline = tostring(customDimensions["pipeline"]), age = todouble(valueMax) | project timestamp, pipeline, age'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'age'
          dimensions: [
            {
              name: 'pipeline'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
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
  lag.id
  positionAge.id
]
