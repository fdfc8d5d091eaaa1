// One region of the proxy: a Container Apps environment holding a control plane, an edge fleet
// and, in the primary region only, the admin app.
//
// Control plane (`ca-cp-<region>`): what the region's edges sync from. gRPC on 50051 as an
// internal TCP port that the edges reach by app name; its main ingress (the admin listener on
// 8081, used by the probes) is environment-internal. It never carries IP restrictions:
// Container Apps applies an app's IP rules to every port of that app, so restricting this app
// would cut its edges off.
// Admin (`ca-admin-<primary>`): the same control-plane image as its own app, with the public
// admin console/API ingress and, alone, the AIPROXY_ADMIN_ALLOWED_IP_RANGES rules. Its gRPC
// listener is bound to loopback and not exposed. It is one more control-plane replica on the
// shared Postgres (replicas learn of each other's writes by LISTEN/NOTIFY) and Redis.
// Edge: public HTTPS ingress on 8080, autoscaled on concurrent requests, no Azure variables;
// it only knows where its control plane is and the edge token.
// Every app pulls its image with the pull-only identity (AcrPull), which the code inside the
// container cannot use (identitySettings lifecycle 'None'). Only the control plane and the
// admin app carry the proxy's identity.
param location string
param isPrimary bool
param tags object
param containerAppsEnvironmentName string
param controlPlaneAppName string
param adminAppName string
param edgeAppName string
param logAnalyticsName string
// Application Insights' connection string, from the monitoring module (not a secret).
param appInsightsConnectionString string
param enableManagedOpenTelemetry bool
param otlpMetricsEndpoint string
@secure()
param otlpMetricsHeaders string
param otlpEndpoint string
param otlpProtocol string
@secure()
param otlpHeaders string
// The metrics collector's image; empty: no collector (metricsCollector=false).
param metricsCollectorImage string
param registryName string
param pullIdentityName string
param identityName string
param redisName string
param redisDatabaseName string
param controlPlaneImage string
param adminImage string
param edgeImage string
param controlPlaneMinReplicas int
param controlPlaneMaxReplicas int
param adminMinReplicas int
param adminMaxReplicas int
param edgeMinReplicas int
param edgeMaxReplicas int
param edgeConcurrentRequests int
param databaseMaxConnections int
param logLevel string
param adminAllowedIpRanges array
@secure()
param databaseUrl string
@secure()
param adminToken string
@secure()
param edgeToken string
@secure()
param catalogToken string
@secure()
param encryptionKey string

var adminPort = 8081
var grpcPort = 50051
var edgePort = 8080
// Shown until azd deploys the real images. It has none of the proxy's endpoints, so it gets
// none of the probes below (Container Apps' default TCP probes on the ingress port apply, and
// the placeholder, listening on port 80, fails them: its revision shows "Activation failed"
// until the deploy, which does not fail the provision). The ingress targetPort is always the
// real port, never the placeholder's: `azd deploy` changes only the image of an app
// (containers[0].image), so a port chosen for the placeholder would stay on the real image.
var placeholderImage = 'mcr.microsoft.com/k8se/quickstart:latest'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: pullIdentityName
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource redis 'Microsoft.Cache/redisEnterprise@2025-07-01' existing = {
  name: redisName
}

resource redisDatabase 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' existing = {
  parent: redis
  name: redisDatabaseName
}

// The managed OpenTelemetry agent (Azure's "Collect and read OpenTelemetry data in Azure
// Container Apps"): it injects OTEL_EXPORTER_OTLP_ENDPOINT (gRPC, e.g.
// http://otel.service.k8se-apps:4317/) and OTEL_EXPORTER_OTLP_PROTOCOL=grpc into every app of the
// environment, and forwards what the apps send to the destinations below. Application Insights
// takes traces and logs but no metrics; metrics go to an OTLP destination when one is given
// (otlpMetricsEndpoint), else not through the agent: the apps send them to the region's metrics
// collector (below), which writes them to Application Insights. The agent speaks gRPC to that
// destination; `insecure` (no TLS) only for an http:// endpoint.
var otlpMetricsDestination = 'metrics'
var otlpMetricsHeaderList = map(
  filter(map(split(otlpMetricsHeaders, ','), h => trim(h)), h => contains(h, '=')),
  h => { key: trim(substring(h, 0, indexOf(h, '='))), value: trim(substring(h, indexOf(h, '=') + 1)) }
)
var openTelemetryAgent = {
  destinationsConfiguration: empty(otlpMetricsEndpoint)
    ? null
    : {
        otlpConfigurations: [
          {
            name: otlpMetricsDestination
            endpoint: otlpMetricsEndpoint
            insecure: startsWith(toLower(otlpMetricsEndpoint), 'http://')
            headers: otlpMetricsHeaderList
          }
        ]
      }
  tracesConfiguration: { destinations: ['appInsights'] }
  logsConfiguration: { destinations: ['appInsights'] }
  metricsConfiguration: empty(otlpMetricsEndpoint) ? null : { destinations: [otlpMetricsDestination] }
}

// A preview API version: the managed OpenTelemetry agent settings (openTelemetryConfiguration,
// appInsightsConfiguration) exist only in the preview versions.
resource appsEnvironment 'Microsoft.App/managedEnvironments@2024-10-02-preview' = {
  name: containerAppsEnvironmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: workspace.properties.customerId
        sharedKey: workspace.listKeys().primarySharedKey
      }
    }
    appInsightsConfiguration: enableManagedOpenTelemetry ? { connectionString: appInsightsConnectionString } : null
    openTelemetryConfiguration: enableManagedOpenTelemetry ? openTelemetryAgent : null
    // Encrypts app-to-app traffic inside the environment (edge -> control plane gRPC).
    peerTrafficConfiguration: {
      encryption: { enabled: true }
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
  }
}

// The region's metrics collector (metrics-collector.bicep), unless the metrics go elsewhere: to
// an OTLP destination through the agent (otlpMetricsEndpoint), or with everything else to the
// operator's own collector (otlpEndpoint).
var deployMetricsCollector = !empty(metricsCollectorImage) && empty(otlpMetricsEndpoint) && empty(otlpEndpoint)
// Its app, and where the apps send their metrics: its OTLP/gRPC port (metrics-collector.bicep's
// otlpGrpcPort, an internal additional port). Built here rather than read from the module's
// outputs, so the apps neither wait for the collector's deployment nor fail with it (an image
// that cannot be pulled costs the metrics, not the region).
var metricsCollectorName = take('ca-otel-${location}', 32)
var metricsCollectorEndpoint = 'http://${metricsCollectorName}:4317'

module metricsCollector 'metrics-collector.bicep' = if (deployMetricsCollector) {
  name: 'metrics-collector-${location}'
  params: {
    location: location
    tags: tags
    environmentId: appsEnvironment.id
    name: metricsCollectorName
    image: metricsCollectorImage
    appInsightsConnectionString: appInsightsConnectionString
  }
}

// Image pulls with the pull-only identity; no registry password exists.
var registries = [
  {
    server: registry.properties.loginServer
    identity: pullIdentity.id
  }
]

// The pull identity is for the platform's image pulls only, never for the app's code.
var pullIdentitySettings = [
  {
    identity: pullIdentity.id
    lifecycle: 'None'
  }
]

// Telemetry settings every app gets. With the managed agent on, Container Apps injects
// OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL itself; a value set here wins, so an
// explicit otlpEndpoint sends every signal straight to that collector instead. With the metrics
// collector, metrics go to it (the per-signal variables win over the agent's general ones) as
// deltas: Application Insights sums what each export brings. The resource attributes say where
// a replica runs (OTEL_SERVICE_NAME, per app, is in the blocks below).
var resourceAttributes = 'cloud.provider=azure,cloud.platform=azure_container_apps,cloud.region=${location},deployment.environment.name=${tags['azd-env-name']}'
var telemetryEnv = concat(
  [
    { name: 'OTEL_RESOURCE_ATTRIBUTES', value: resourceAttributes }
  ],
  empty(otlpEndpoint)
    ? []
    : [
        { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: otlpEndpoint }
        { name: 'OTEL_EXPORTER_OTLP_PROTOCOL', value: otlpProtocol }
      ],
  empty(otlpEndpoint) || empty(otlpHeaders)
    ? []
    : [
        { name: 'OTEL_EXPORTER_OTLP_HEADERS', secretRef: 'otlp-headers' }
      ],
  deployMetricsCollector
    ? [
        { name: 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', value: metricsCollectorEndpoint }
        { name: 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', value: 'grpc' }
        { name: 'OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE', value: 'delta' }
      ]
    : []
)
var telemetrySecrets = empty(otlpEndpoint) || empty(otlpHeaders) ? [] : [{ name: 'otlp-headers', value: otlpHeaders }]

// service.name per app: what Application Insights shows as the role (cloud_RoleName).
var controlPlaneServiceEnv = [
  { name: 'OTEL_SERVICE_NAME', value: 'aiproxy-control-plane' }
]
var adminServiceEnv = [
  { name: 'OTEL_SERVICE_NAME', value: 'aiproxy-admin' }
]
var edgeServiceEnv = [
  { name: 'OTEL_SERVICE_NAME', value: 'aiproxy-edge' }
]

// Everything a control-plane replica needs, in the control plane and in the admin app alike.
var controlPlaneEnv = [
  { name: 'AIPROXY_DATABASE_URL', secretRef: 'database-url' }
  { name: 'AIPROXY_DATABASE_MAX_CONNECTIONS', value: string(databaseMaxConnections) }
  { name: 'AIPROXY_REDIS_URL', secretRef: 'redis-url' }
  { name: 'AIPROXY_ADMIN_TOKEN', secretRef: 'admin-token' }
  { name: 'AIPROXY_EDGE_TOKEN', secretRef: 'edge-token' }
  { name: 'AIPROXY_CATALOG_TOKEN', secretRef: 'catalog-token' }
  { name: 'AIPROXY_ENCRYPTION_KEY', secretRef: 'encryption-key' }
  { name: 'AIPROXY_ADMIN_ADDR', value: '0.0.0.0:${adminPort}' }
  { name: 'AIPROXY_CREDENTIAL', value: 'managed-identity' }
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'RUST_LOG', value: logLevel }
]

// The control plane serves gRPC to the environment (its edges).
var grpcListenerEnv = [
  { name: 'AIPROXY_GRPC_ADDR', value: '0.0.0.0:${grpcPort}' }
]

// The admin app serves the admin console/API only: its gRPC listener answers on loopback.
var adminListenerEnv = [
  { name: 'AIPROXY_GRPC_ADDR', value: '127.0.0.1:${grpcPort}' }
]

var edgeEnv = [
  { name: 'AIPROXY_CONTROL_PLANE_URL', value: 'http://${controlPlaneAppName}:${grpcPort}' }
  { name: 'AIPROXY_EDGE_TOKEN', secretRef: 'edge-token' }
  { name: 'AIPROXY_LISTEN_ADDR', value: '0.0.0.0:${edgePort}' }
  { name: 'AIPROXY_REGION', value: location }
  { name: 'AIPROXY_EDGE_STATE_DIR', value: '/var/lib/aiproxy-edge' }
  { name: 'RUST_LOG', value: logLevel }
]

var controlPlaneSecrets = concat(telemetrySecrets, [
  { name: 'database-url', value: databaseUrl }
  {
    name: 'redis-url'
    value: 'rediss://:${uriComponent(redisDatabase.listKeys().primaryKey)}@${redis.properties.hostName}:${redisDatabase.properties.port}'
  }
  { name: 'admin-token', value: adminToken }
  { name: 'edge-token', value: edgeToken }
  { name: 'catalog-token', value: catalogToken }
  { name: 'encryption-key', value: encryptionKey }
])

// Container Apps accepts failureThreshold 1-10, periodSeconds 1-240, initialDelaySeconds 0-60.
// Startup allows about 100 s (migrations on a cold Postgres) before the first restart.
var controlPlaneProbes = [
  {
    type: 'Startup'
    httpGet: { path: '/healthz', port: adminPort }
    initialDelaySeconds: 5
    periodSeconds: 10
    failureThreshold: 10
  }
  {
    type: 'Liveness'
    httpGet: { path: '/healthz', port: adminPort }
    periodSeconds: 10
    failureThreshold: 3
  }
  {
    type: 'Readiness'
    httpGet: { path: '/healthz', port: adminPort }
    periodSeconds: 5
    failureThreshold: 3
  }
]

var edgeProbes = [
  {
    type: 'Startup'
    httpGet: { path: '/healthz', port: edgePort }
    initialDelaySeconds: 2
    periodSeconds: 5
    failureThreshold: 10
  }
  {
    type: 'Liveness'
    httpGet: { path: '/healthz', port: edgePort }
    periodSeconds: 10
    failureThreshold: 3
  }
  {
    type: 'Readiness'
    httpGet: { path: '/readyz', port: edgePort }
    periodSeconds: 5
    failureThreshold: 3
  }
]

var cpuScaleRules = [
  {
    name: 'cpu'
    custom: {
      type: 'cpu'
      metadata: { type: 'Utilization', value: '70' }
    }
  }
]

resource controlPlane 'Microsoft.App/containerApps@2024-10-02-preview' = {
  name: controlPlaneAppName
  location: location
  // Only the primary region's apps carry azd's service tag: azd deploys there, and the
  // postdeploy hook rolls the same image out to the other regions.
  tags: union(tags, isPrimary ? { 'azd-service-name': 'control-plane' } : {})
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
      '${pullIdentity.id}': {}
    }
  }
  properties: {
    environmentId: appsEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      identitySettings: pullIdentitySettings
      // Environment-internal only, and never IP-restricted: the edges' gRPC port is here.
      ingress: {
        external: false
        targetPort: adminPort
        transport: 'auto'
        allowInsecure: false
        additionalPortMappings: [
          {
            external: false
            targetPort: grpcPort
            exposedPort: grpcPort
          }
        ]
      }
      registries: registries
      secrets: controlPlaneSecrets
    }
    template: {
      containers: [
        {
          name: 'control-plane'
          image: empty(controlPlaneImage) ? placeholderImage : controlPlaneImage
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(controlPlaneEnv, grpcListenerEnv, controlPlaneServiceEnv, telemetryEnv)
          probes: empty(controlPlaneImage) ? [] : controlPlaneProbes
        }
      ]
      scale: {
        minReplicas: controlPlaneMinReplicas
        maxReplicas: controlPlaneMaxReplicas
        rules: cpuScaleRules
      }
    }
  }
}

// The admin console/API, public, in the primary region only.
resource admin 'Microsoft.App/containerApps@2024-10-02-preview' = if (isPrimary) {
  name: adminAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'admin' })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
      '${pullIdentity.id}': {}
    }
  }
  properties: {
    environmentId: appsEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      identitySettings: pullIdentitySettings
      // The only ingress the admin IP rules apply to; no other port is exposed.
      ingress: {
        external: true
        targetPort: adminPort
        transport: 'auto'
        allowInsecure: false
        ipSecurityRestrictions: [
          for (range, i) in adminAllowedIpRanges: {
            name: 'admin-${i}'
            action: 'Allow'
            ipAddressRange: range
          }
        ]
      }
      registries: registries
      secrets: controlPlaneSecrets
    }
    template: {
      containers: [
        {
          name: 'admin'
          image: empty(adminImage) ? placeholderImage : adminImage
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          env: concat(controlPlaneEnv, adminListenerEnv, adminServiceEnv, telemetryEnv)
          probes: empty(adminImage) ? [] : controlPlaneProbes
        }
      ]
      scale: {
        minReplicas: adminMinReplicas
        maxReplicas: adminMaxReplicas
        rules: cpuScaleRules
      }
    }
  }
}

resource edge 'Microsoft.App/containerApps@2024-10-02-preview' = {
  name: edgeAppName
  location: location
  tags: union(tags, isPrimary ? { 'azd-service-name': 'edge' } : {})
  // The pull identity only, for image pulls; the proxy's identity never reaches an edge.
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${pullIdentity.id}': {}
    }
  }
  properties: {
    environmentId: appsEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      identitySettings: pullIdentitySettings
      ingress: {
        external: true
        targetPort: edgePort
        transport: 'auto'
        allowInsecure: false
      }
      registries: registries
      secrets: concat(telemetrySecrets, [
        { name: 'edge-token', value: edgeToken }
      ])
    }
    template: {
      containers: [
        {
          name: 'edge'
          image: empty(edgeImage) ? placeholderImage : edgeImage
          resources: {
            cpu: json('1.0')
            memory: '2Gi'
          }
          env: concat(edgeEnv, edgeServiceEnv, telemetryEnv)
          volumeMounts: [
            { volumeName: 'edge-state', mountPath: '/var/lib/aiproxy-edge' }
          ]
          probes: empty(edgeImage) ? [] : edgeProbes
        }
      ]
      // Survives container restarts within a replica, so a restarted edge can serve its
      // last-known-good snapshot while the control plane is unreachable.
      volumes: [
        { name: 'edge-state', storageType: 'EmptyDir' }
      ]
      scale: {
        minReplicas: edgeMinReplicas
        maxReplicas: edgeMaxReplicas
        rules: [
          {
            name: 'http'
            http: {
              metadata: { concurrentRequests: string(edgeConcurrentRequests) }
            }
          }
        ]
      }
    }
  }
}

output adminFqdn string = isPrimary ? admin.properties.configuration.ingress.fqdn : ''
output edgeFqdn string = edge.properties.configuration.ingress.fqdn
