// One region's metrics collector: an OpenTelemetry Collector (contrib distribution) that takes
// the apps' metrics over OTLP/gRPC and writes them to Application Insights (`customMetrics`)
// with its Azure Monitor exporter. It exists because Application Insights takes traces and
// logs from the Container Apps managed OpenTelemetry agent, but no metrics.
//
// The apps send their metrics here themselves (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, set by
// region.bicep), as delta sums and histograms (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE
// =delta): Application Insights adds up what each export sends, so cumulative totals would be
// counted again at every export. The collector keeps no state: a restart loses at most one
// export interval's batch.
//
// Reached inside the environment only, by app name: OTLP/gRPC on an internal TCP port (like the
// control plane's gRPC), the health check on the main (internal) ingress. It carries no
// identity, pulls its public image anonymously and holds one secret, the Application Insights
// connection string, which its exporter reads from APPLICATIONINSIGHTS_CONNECTION_STRING.
param location string
param tags object
param environmentId string
param name string
param image string
@secure()
param appInsightsConnectionString string

// The port the apps export to (region.bicep's metricsCollectorEndpoint names it too; the
// offline checks hold the two, and the configuration below, to the same number).
var otlpGrpcPort = 4317
var healthPort = 13133

// The collector's whole configuration, passed in an environment variable (`--config=env:...`):
// no file share to mount. Metrics only; the agent carries traces and logs.
var collectorConfig = '''
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  batch: {}
exporters:
  azuremonitor:
    connection_string: ${env:APPLICATIONINSIGHTS_CONNECTION_STRING}
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
service:
  extensions: [health_check]
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [azuremonitor]
'''

resource collector 'Microsoft.App/containerApps@2024-10-02-preview' = {
  name: name
  location: location
  tags: tags
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: false
        targetPort: healthPort
        transport: 'http'
        allowInsecure: false
        additionalPortMappings: [
          {
            external: false
            targetPort: otlpGrpcPort
            exposedPort: otlpGrpcPort
          }
        ]
      }
      secrets: [
        { name: 'appinsights-connection-string', value: appInsightsConnectionString }
      ]
    }
    template: {
      containers: [
        {
          name: 'otel-collector'
          image: image
          args: ['--config=env:OTELCOL_CONFIG']
          resources: {
            cpu: json('0.25')
            memory: '0.5Gi'
          }
          env: [
            { name: 'OTELCOL_CONFIG', value: collectorConfig }
            { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', secretRef: 'appinsights-connection-string' }
          ]
          probes: [
            {
              type: 'Liveness'
              httpGet: { path: '/', port: healthPort }
              periodSeconds: 30
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: { path: '/', port: healthPort }
              periodSeconds: 10
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
    }
  }
}
