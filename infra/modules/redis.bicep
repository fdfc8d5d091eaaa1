// Azure Managed Redis (Microsoft.Cache/redisEnterprise; Azure Cache for Redis is retiring): the
// control planes' shared token cache, refresh locks, counters and change notifications.
// One database, which Azure requires to be named 'default'. TLS only, on port 10000.
// EnterpriseCluster, not the default OSSCluster: the cluster answers on one endpoint like a
// single Redis, so the control plane's non-cluster `redis` client works (OSSCluster would send
// it MOVED redirects to shard addresses). Access keys stay on: the key goes into
// AIPROXY_REDIS_URL as `rediss://:<key>@<host>:10000` (region.bicep).
param location string
param tags object
param name string
param sku string

resource cluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
  }
  properties: {
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: cluster
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'VolatileLRU'
    accessKeysAuthentication: 'Enabled'
  }
}

output name string = cluster.name
// The database's name, read by the region modules: they list its key only after it exists.
output databaseName string = database.name
output hostName string = cluster.properties.hostName
