// One region of the proxy: a Container Apps environment holding a control plane and an edge
// fleet.
//
// Control plane: main ingress = admin console/API on 8081 (public in the primary region,
// environment-internal elsewhere); gRPC on 50051 as an additional, internal-only TCP port, which
// the region's edges reach by app name. It carries the proxy's user-assigned identity.
// Edge: public HTTPS ingress on 8080, autoscaled on concurrent requests, no identity, no
// Azure variables; it only knows where its control plane is and the edge token.
param location string
param isPrimary bool
param tags object
param containerAppsEnvironmentName string
param controlPlaneAppName string
param edgeAppName string
param logAnalyticsName string
param appInsightsName string
param enableManagedOpenTelemetry bool
param otlpEndpoint string
param registryName string
param identityName string
param redisName string
param controlPlaneImage string
param edgeImage string
param controlPlaneMinReplicas int
param controlPlaneMaxReplicas int
param edgeMinReplicas int
param edgeMaxReplicas int
param edgeConcurrentRequests int
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
// Shown until azd deploys the real images; the apps' probes fail against it, which is expected.
var placeholderImage = 'mcr.microsoft.com/k8se/quickstart:latest'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource redis 'Microsoft.Cache/redis@2024-03-01' existing = {
  name: redisName
}

// A preview API version: the managed OpenTelemetry agent settings are only there.
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
    appInsightsConfiguration: enableManagedOpenTelemetry
      ? { connectionString: appInsights.properties.ConnectionString }
      : null
    openTelemetryConfiguration: enableManagedOpenTelemetry
      ? {
          tracesConfiguration: { destinations: ['appInsights'] }
          logsConfiguration: { destinations: ['appInsights'] }
        }
      : null
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

var registrySecrets = [
  {
    name: 'registry-password'
    value: registry.listCredentials().passwords[0].value
  }
]

var registries = [
  {
    server: registry.properties.loginServer
    username: registry.listCredentials().username
    passwordSecretRef: 'registry-password'
  }
]

// With the managed agent on, Container Apps injects OTEL_EXPORTER_OTLP_ENDPOINT itself;
// an explicit otlpEndpoint overrides it.
var telemetryEnv = empty(otlpEndpoint)
  ? []
  : [
      { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: otlpEndpoint }
    ]

var controlPlaneEnv = [
  { name: 'AIPROXY_DATABASE_URL', secretRef: 'database-url' }
  { name: 'AIPROXY_REDIS_URL', secretRef: 'redis-url' }
  { name: 'AIPROXY_ADMIN_TOKEN', secretRef: 'admin-token' }
  { name: 'AIPROXY_EDGE_TOKEN', secretRef: 'edge-token' }
  { name: 'AIPROXY_CATALOG_TOKEN', secretRef: 'catalog-token' }
  { name: 'AIPROXY_ENCRYPTION_KEY', secretRef: 'encryption-key' }
  { name: 'AIPROXY_GRPC_ADDR', value: '0.0.0.0:${grpcPort}' }
  { name: 'AIPROXY_ADMIN_ADDR', value: '0.0.0.0:${adminPort}' }
  { name: 'AIPROXY_CREDENTIAL', value: 'managed-identity' }
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'RUST_LOG', value: logLevel }
  { name: 'OTEL_SERVICE_NAME', value: 'aiproxy-control-plane' }
]

var edgeEnv = [
  { name: 'AIPROXY_CONTROL_PLANE_URL', value: 'http://${controlPlaneAppName}:${grpcPort}' }
  { name: 'AIPROXY_EDGE_TOKEN', secretRef: 'edge-token' }
  { name: 'AIPROXY_LISTEN_ADDR', value: '0.0.0.0:${edgePort}' }
  { name: 'AIPROXY_REGION', value: location }
  { name: 'AIPROXY_EDGE_STATE_DIR', value: '/var/lib/aiproxy-edge' }
  { name: 'RUST_LOG', value: logLevel }
  { name: 'OTEL_SERVICE_NAME', value: 'aiproxy-edge' }
]

resource controlPlane 'Microsoft.App/containerApps@2024-03-01' = {
  name: controlPlaneAppName
  location: location
  // Only the primary region's apps carry azd's service tag: azd deploys there, and the
  // postdeploy hook rolls the same image out to the other regions.
  tags: union(tags, isPrimary ? { 'azd-service-name': 'control-plane' } : {})
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    environmentId: appsEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: isPrimary
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
        additionalPortMappings: [
          {
            external: false
            targetPort: grpcPort
            exposedPort: grpcPort
          }
        ]
      }
      registries: registries
      secrets: concat(registrySecrets, [
        { name: 'database-url', value: databaseUrl }
        {
          name: 'redis-url'
          value: 'rediss://:${uriComponent(redis.listKeys().primaryKey)}@${redis.properties.hostName}:${redis.properties.sslPort}'
        }
        { name: 'admin-token', value: adminToken }
        { name: 'edge-token', value: edgeToken }
        { name: 'catalog-token', value: catalogToken }
        { name: 'encryption-key', value: encryptionKey }
      ])
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
          env: concat(controlPlaneEnv, telemetryEnv)
          probes: [
            {
              type: 'Startup'
              httpGet: { path: '/healthz', port: adminPort }
              periodSeconds: 2
              failureThreshold: 60
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
        }
      ]
      scale: {
        minReplicas: controlPlaneMinReplicas
        maxReplicas: controlPlaneMaxReplicas
        rules: [
          {
            name: 'cpu'
            custom: {
              type: 'cpu'
              metadata: { type: 'Utilization', value: '70' }
            }
          }
        ]
      }
    }
  }
}

resource edge 'Microsoft.App/containerApps@2024-03-01' = {
  name: edgeAppName
  location: location
  tags: union(tags, isPrimary ? { 'azd-service-name': 'edge' } : {})
  properties: {
    environmentId: appsEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: edgePort
        transport: 'auto'
        allowInsecure: false
      }
      registries: registries
      secrets: concat(registrySecrets, [
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
          env: concat(edgeEnv, telemetryEnv)
          volumeMounts: [
            { volumeName: 'edge-state', mountPath: '/var/lib/aiproxy-edge' }
          ]
          probes: [
            {
              type: 'Startup'
              httpGet: { path: '/healthz', port: edgePort }
              periodSeconds: 2
              failureThreshold: 60
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

output controlPlaneFqdn string = controlPlane.properties.configuration.ingress.fqdn
output edgeFqdn string = edge.properties.configuration.ingress.fqdn
