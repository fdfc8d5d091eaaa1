// AI Proxy on Azure Container Apps, deployed by `azd up`.
//
// One resource group holds everything. The primary region (`location`) gets the shared
// state (Postgres, Azure Managed Redis), the container registry, monitoring and the admin app
// (the public admin console/API, the only ingress the admin IP rules apply to).
// Every region listed in `regions` gets a Container Apps environment with a control plane
// (internal gRPC for its edges, at least two replicas) and an autoscaled edge app: edges only
// reach a control plane in their own environment, so each region runs one, and all of them
// share the primary region's Postgres and Redis.
//
// The proxy's user-assigned identity is attached to every control plane and the admin app
// (AZURE_CLIENT_ID); edges never get it. Its roles on your AI resources come from
// scripts/setup-managed-identity-rbac.sh, or from the optional rbac* parameters below.
// A second identity holds AcrPull only and pulls every app's image.
//
// Invalid combinations (a Postgres size too small for the replicas' connection pools, high
// availability on Burstable) are refused here, by fail(), before ARM creates anything.
targetScope = 'subscription'

@minLength(1)
@maxLength(48)
@description('Name of the azd environment; names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Primary region: Postgres, Redis, registry, monitoring and the public admin console.')
param location string

@description('Comma-separated regions that each get a control plane and an edge fleet (e.g. "swedencentral,eastus2"). The primary region is always one of them; empty means only it.')
param regions string = ''

@description('Control-plane image. azd fills it from SERVICE_CONTROL_PLANE_IMAGE_NAME after a deploy; empty deploys a placeholder until then.')
param controlPlaneImage string = ''

@description('Admin app image (the control-plane image, built as the azd service `admin`). azd fills it from SERVICE_ADMIN_IMAGE_NAME after a deploy; empty deploys a placeholder until then.')
param adminImage string = ''

@description('Edge image. azd fills it from SERVICE_EDGE_IMAGE_NAME after a deploy; empty deploys a placeholder until then.')
param edgeImage string = ''

@minValue(2)
@description('Control-plane replicas per region, at least two.')
param controlPlaneMinReplicas int = 2

@minValue(2)
param controlPlaneMaxReplicas int = 4

@minValue(1)
@description('Admin app replicas (primary region only); each is a full control-plane replica with its own connection pool.')
param adminMinReplicas int = 1

@minValue(1)
param adminMaxReplicas int = 2

@minValue(1)
@maxValue(1000)
@description('AIPROXY_DATABASE_MAX_CONNECTIONS: the Postgres pool of each control-plane and admin replica (each holds one more connection for LISTEN/NOTIFY). See docs/deploying.md for the arithmetic.')
param databaseMaxConnections int = 10

@minValue(1)
@description('Edge replicas per region that stay up when idle (1 keeps the first request fast and the last-known-good snapshot warm).')
param edgeMinReplicas int = 1

@minValue(1)
param edgeMaxReplicas int = 10

@minValue(1)
@description('Concurrent requests per edge replica before Container Apps adds one.')
param edgeConcurrentRequests int = 100

@description('RUST_LOG for both binaries.')
param logLevel string = 'info'

@description('Comma-separated CIDR ranges allowed to reach the admin app (console and admin API) and only it; empty allows any address (the API still requires its admin token). The control planes the edges sync from never get these rules.')
param adminAllowedIpRanges string = ''

@description('Turn on each environment\'s managed OpenTelemetry agent: it injects OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/gRPC) into every app and forwards traces and logs to Application Insights. false: no agent; nothing is exported unless otlpEndpoint is set.')
param enableManagedOpenTelemetry bool = true

@description('Optional OTLP/gRPC endpoint the managed agent forwards metrics to (Application Insights takes no metrics from the agent), e.g. https://otlp.example.com:4317. Needs enableManagedOpenTelemetry.')
param otlpMetricsEndpoint string = ''

@secure()
@description('Optional headers for otlpMetricsEndpoint, "key=value,key2=value2" (e.g. an API key).')
param otlpMetricsHeaders string = ''

@description('Deploy an OpenTelemetry Collector app in each region that writes the apps\' metrics to Application Insights (customMetrics), which takes no metrics from the managed agent. Ignored when otlpMetricsEndpoint or otlpEndpoint sends the metrics elsewhere. false: no collector; the apps still export metrics to the managed agent, which drops them (or, with the agent off, export none).')
param metricsCollector bool = true

@description('Image of that collector: an OpenTelemetry Collector distribution with the OTLP receiver, the azuremonitor exporter and the env config provider (the contrib distribution has them). Empty: the pinned default below (mirror it into your registry where public registries are not reachable).')
param metricsCollectorImage string = ''

@description('Optional endpoint of your own OTLP collector. Set, every app exports straight to it (OTEL_EXPORTER_OTLP_ENDPOINT, overriding the agent\'s) and the agent gets nothing from the apps.')
param otlpEndpoint string = ''

@allowed([
  'grpc'
  'http/protobuf'
])
@description('OTEL_EXPORTER_OTLP_PROTOCOL for otlpEndpoint (only applied when otlpEndpoint is set; the managed agent takes gRPC only).')
param otlpProtocol string = 'grpc'

@secure()
@description('Optional OTEL_EXPORTER_OTLP_HEADERS for otlpEndpoint, "key=value,key2=value2"; a Container App secret in every app.')
param otlpHeaders string = ''

// Each allowed size is in postgresSkus below, with its tier and connection limit.
@allowed([
  'Standard_B1ms'
  'Standard_B2s'
  'Standard_B2ms'
  'Standard_B4ms'
  'Standard_B8ms'
  'Standard_D2ds_v5'
  'Standard_D4ds_v5'
  'Standard_D8ds_v5'
  'Standard_D16ds_v5'
  'Standard_E2ds_v5'
  'Standard_E4ds_v5'
])
@description('Postgres compute size; the tier (Burstable, GeneralPurpose, MemoryOptimized) follows from it.')
param postgresSkuName string = 'Standard_B2s'

// The Premium SSD sizes Flexible Server offers (32 GiB to 32 TiB).
@allowed([32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768])
param postgresStorageGb int = 32

@description('Zone-redundant standby for Postgres (GeneralPurpose or MemoryOptimized sizes only; refused on Burstable).')
param postgresHighAvailability bool = false

// Azure Managed Redis sizes; one parameter, so there is no SKU/capacity pair to get wrong.
@allowed([
  'Balanced_B0'
  'Balanced_B1'
  'Balanced_B3'
  'Balanced_B5'
  'Balanced_B10'
  'MemoryOptimized_M10'
  'MemoryOptimized_M20'
  'ComputeOptimized_X3'
  'ComputeOptimized_X5'
])
@description('Azure Managed Redis size. The token cache is small: Balanced_B0 is plenty.')
param redisSku string = 'Balanced_B0'

@description('Optional: comma-separated Azure OpenAI / AI Services account resource ids; the identity gets Cognitive Services OpenAI User on each.')
param rbacOpenAiAccountIds string = ''

@description('Optional: comma-separated Foundry hub account resource ids; the identity gets Cognitive Services OpenAI User on each.')
param rbacFoundryHubIds string = ''

@description('Optional: comma-separated Foundry project resource ids (.../accounts/<hub>/projects/<project>); the identity gets Azure AI User on each and Cognitive Services OpenAI User on its hub.')
param rbacFoundryProjectIds string = ''

@description('Optional: comma-separated Azure AI Search service resource ids; the identity gets Search Index Data Reader on each.')
param rbacSearchServiceIds string = ''

// Secrets: azd generates each one on the first `azd up`, keeps it in the environment's
// .azure/<env>/config.json and passes it again on every provision. None is ever an output.

@secure()
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
@description('Bootstrap admin bearer token for the admin console and API.')
param adminToken string

@secure()
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
@description('Credential edges present to the control plane.')
param edgeToken string

@secure()
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
@description('Credential of the read-only CatalogService for other services.')
param catalogToken string

@secure()
@minLength(32)
@maxLength(32)
@metadata({ azd: { type: 'generate', config: { length: 32, noSpecial: true } } })
@description('32 random characters; their base64 is AIPROXY_ENCRYPTION_KEY (32 bytes for AES-256-GCM).')
param encryptionKeySeed string

@secure()
@metadata({ azd: { type: 'generate', config: { length: 32, noSpecial: true, minLower: 2, minUpper: 2, minNumeric: 2 } } })
@description('Postgres administrator password.')
param postgresAdminPassword string

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

var primaryRegion = toLower(location)
var regionList = union([primaryRegion], filter(map(split(regions, ','), r => toLower(trim(r))), r => !empty(r)))

// Container app names only need to be unique within the resource group.
var controlPlaneAppNames = map(regionList, r => take('ca-cp-${r}', 32))
var edgeAppNames = map(regionList, r => take('ca-edge-${r}', 32))

var adminAppName = take('ca-admin-${primaryRegion}', 32)

// The metrics collector's image when metricsCollectorImage is empty: a pinned release of the
// contrib distribution, from GitHub's registry (no anonymous pull limit).
var defaultMetricsCollectorImage = 'ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry-collector-contrib:0.120.0'

var postgresAdminUser = 'aiproxyadmin'
var postgresDatabase = 'aiproxy'

// Flexible Server's default max_connections per size, minus the 15 Azure reserves for
// replication and monitoring (the "max user connections" of Azure's limits page).
var postgresSkus = {
  Standard_B1ms: { tier: 'Burstable', userConnections: 35 }
  Standard_B2s: { tier: 'Burstable', userConnections: 414 }
  Standard_B2ms: { tier: 'Burstable', userConnections: 844 }
  Standard_B4ms: { tier: 'Burstable', userConnections: 1703 }
  Standard_B8ms: { tier: 'Burstable', userConnections: 3422 }
  Standard_D2ds_v5: { tier: 'GeneralPurpose', userConnections: 844 }
  Standard_D4ds_v5: { tier: 'GeneralPurpose', userConnections: 1703 }
  Standard_D8ds_v5: { tier: 'GeneralPurpose', userConnections: 3422 }
  Standard_D16ds_v5: { tier: 'GeneralPurpose', userConnections: 4985 }
  Standard_E2ds_v5: { tier: 'MemoryOptimized', userConnections: 1703 }
  Standard_E4ds_v5: { tier: 'MemoryOptimized', userConnections: 3422 }
}
var postgresTier = postgresSkus[postgresSkuName].tier
var postgresUserConnections = postgresSkus[postgresSkuName].userConnections

// Every control-plane replica (each region's control plane at its maximum, plus the admin app)
// opens up to databaseMaxConnections for the catalog and one for LISTEN/NOTIFY.
var controlPlaneReplicasAtMost = length(regionList) * max(controlPlaneMaxReplicas, controlPlaneMinReplicas) + max(adminMaxReplicas, adminMinReplicas)
var postgresConnectionsNeeded = controlPlaneReplicasAtMost * (databaseMaxConnections + 1)

// Refused here rather than by ARM halfway through a deployment.
var checkedDatabaseMaxConnections = postgresConnectionsNeeded > postgresUserConnections
  ? fail('Postgres ${postgresSkuName} allows ${postgresUserConnections} connections, but ${controlPlaneReplicasAtMost} control-plane replicas x (databaseMaxConnections ${databaseMaxConnections} + 1) need ${postgresConnectionsNeeded}: pick a larger postgresSkuName, fewer replicas or a smaller pool (docs/deploying.md, Sizing).')
  : databaseMaxConnections
var checkedPostgresHighAvailability = postgresHighAvailability && postgresTier == 'Burstable'
  ? fail('postgresHighAvailability needs a GeneralPurpose or MemoryOptimized postgresSkuName; ${postgresSkuName} is Burstable, which has no zone-redundant high availability.')
  : postgresHighAvailability

// The agent forwards metrics only when it exists: an endpoint without it would silently get nothing.
var checkedOtlpMetricsEndpoint = !enableManagedOpenTelemetry && !empty(otlpMetricsEndpoint)
  ? fail('otlpMetricsEndpoint is forwarded to by the managed OpenTelemetry agent, which enableManagedOpenTelemetry=false turns off: turn it on, or point otlpEndpoint at your collector instead.')
  : otlpMetricsEndpoint

var roleOpenAiUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd' // Cognitive Services OpenAI User
var roleAzureAiUser = '53ca6127-db72-4e31-b599-04dc5da150b4' // Azure AI User
var roleSearchIndexDataReader = '1407120a-92aa-4202-b7e9-c0e197c71c8f' // Search Index Data Reader

var openAiAccountIds = filter(map(split(rbacOpenAiAccountIds, ','), id => trim(id)), id => !empty(id))
var foundryProjectIds = filter(map(split(rbacFoundryProjectIds, ','), id => trim(id)), id => !empty(id))
var foundryHubIds = union(
  filter(map(split(rbacFoundryHubIds, ','), id => trim(id)), id => !empty(id)),
  map(foundryProjectIds, id => join(take(split(id, '/'), 9), '/'))
)
var searchServiceIds = filter(map(split(rbacSearchServiceIds, ','), id => trim(id)), id => !empty(id))

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'cr${resourceToken}'
    pullIdentityName: 'id-pull-${resourceToken}'
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'id-aiproxy-${resourceToken}'
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'psql-${resourceToken}'
    administratorLogin: postgresAdminUser
    administratorPassword: postgresAdminPassword
    databaseName: postgresDatabase
    tier: postgresTier
    skuName: postgresSkuName
    storageGb: postgresStorageGb
    highAvailability: checkedPostgresHighAvailability
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'redis-${resourceToken}'
    sku: redisSku
  }
}

module regionStacks 'modules/region.bicep' = [
  for (region, i) in regionList: {
    name: 'region-${region}'
    scope: rg
    params: {
      location: region
      isPrimary: i == 0
      tags: tags
      containerAppsEnvironmentName: take('cae-${region}', 60)
      controlPlaneAppName: controlPlaneAppNames[i]
      adminAppName: adminAppName
      edgeAppName: edgeAppNames[i]
      logAnalyticsName: monitoring.outputs.logAnalyticsName
      appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
      enableManagedOpenTelemetry: enableManagedOpenTelemetry
      otlpMetricsEndpoint: checkedOtlpMetricsEndpoint
      otlpMetricsHeaders: otlpMetricsHeaders
      otlpEndpoint: otlpEndpoint
      otlpProtocol: otlpProtocol
      otlpHeaders: otlpHeaders
      metricsCollectorImage: metricsCollector ? (empty(metricsCollectorImage) ? defaultMetricsCollectorImage : metricsCollectorImage) : ''
      registryName: registry.outputs.name
      pullIdentityName: registry.outputs.pullIdentityName
      identityName: identity.outputs.name
      redisName: redis.outputs.name
      redisDatabaseName: redis.outputs.databaseName
      controlPlaneImage: controlPlaneImage
      adminImage: adminImage
      edgeImage: edgeImage
      controlPlaneMinReplicas: controlPlaneMinReplicas
      controlPlaneMaxReplicas: max(controlPlaneMaxReplicas, controlPlaneMinReplicas)
      adminMinReplicas: adminMinReplicas
      adminMaxReplicas: max(adminMaxReplicas, adminMinReplicas)
      edgeMinReplicas: edgeMinReplicas
      edgeMaxReplicas: max(edgeMaxReplicas, edgeMinReplicas)
      edgeConcurrentRequests: edgeConcurrentRequests
      databaseMaxConnections: checkedDatabaseMaxConnections
      logLevel: logLevel
      adminAllowedIpRanges: filter(map(split(adminAllowedIpRanges, ','), c => trim(c)), c => !empty(c))
      databaseUrl: 'postgres://${postgresAdminUser}:${uriComponent(postgresAdminPassword)}@${postgres.outputs.fqdn}:5432/${postgresDatabase}?sslmode=require'
      adminToken: adminToken
      edgeToken: edgeToken
      catalogToken: catalogToken
      encryptionKey: base64(encryptionKeySeed)
    }
  }
]

// Optional role assignments for the proxy's identity (the RBAC script does the same).
module openAiUserOnAccounts 'modules/roles/account-role.bicep' = [
  for id in union(openAiAccountIds, foundryHubIds): {
    name: 'rbac-openai-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      accountName: split(id, '/')[8]
      principalId: identity.outputs.principalId
      roleDefinitionId: roleOpenAiUser
    }
  }
]

module azureAiUserOnProjects 'modules/roles/project-role.bicep' = [
  for id in foundryProjectIds: {
    name: 'rbac-project-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      accountName: split(id, '/')[8]
      projectName: split(id, '/')[10]
      principalId: identity.outputs.principalId
      roleDefinitionId: roleAzureAiUser
    }
  }
]

module searchReaderOnServices 'modules/roles/search-role.bicep' = [
  for id in searchServiceIds: {
    name: 'rbac-search-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      searchServiceName: split(id, '/')[8]
      principalId: identity.outputs.principalId
      roleDefinitionId: roleSearchIndexDataReader
    }
  }
]

// azd writes these to .azure/<env>/.env. No secret is among them. The RBAC script and the
// next-step hook read AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AIPROXY_IDENTITY_NAME,
// AIPROXY_IDENTITY_PRINCIPAL_ID, AIPROXY_ADMIN_URL and AIPROXY_ADMIN_APP_NAME.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_SUBSCRIPTION_ID string = subscription().subscriptionId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AIPROXY_REGIONS_DEPLOYED string = join(regionList, ',')
output AIPROXY_ADMIN_URL string = 'https://${regionStacks[0].outputs.adminFqdn}'
output AIPROXY_ADMIN_APP_NAME string = adminAppName
// The OpenAI / Azure SDK endpoint per region (azd stores arrays as JSON).
output AIPROXY_EDGE_URLS array = [for (region, i) in regionList: 'https://${regionStacks[i].outputs.edgeFqdn}/api/v1']
output AIPROXY_IDENTITY_NAME string = identity.outputs.name
output AIPROXY_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AIPROXY_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AIPROXY_POSTGRES_HOST string = postgres.outputs.fqdn
output AIPROXY_REDIS_HOST string = redis.outputs.hostName
// The postdeploy hook rolls the images azd deployed to the primary apps out to these.
output AIPROXY_SECONDARY_CONTROL_PLANE_APPS string = join(skip(controlPlaneAppNames, 1), ' ')
output AIPROXY_SECONDARY_EDGE_APPS string = join(skip(edgeAppNames, 1), ' ')
