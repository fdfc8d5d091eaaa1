// Log Analytics (container logs of every region) and Application Insights (traces and logs
// from the Container Apps managed OpenTelemetry agent of every region).
param location string
param tags object
param logAnalyticsName string
param appInsightsName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    // The managed OpenTelemetry agent sends with the connection string (instrumentation key),
    // so local authentication must stay allowed (DisableLocalAuth false).
    DisableLocalAuth: false
  }
}

output logAnalyticsName string = workspace.name
output appInsightsName string = appInsights.name
// Not a secret: it identifies the resource and carries no credential (Azure's documentation
// on connection strings). Each region's Container Apps environment gives it to its agent.
output appInsightsConnectionString string = appInsights.properties.ConnectionString
