// Azure Cache for Redis: the control planes' shared token cache, refresh locks, counters and
// change notifications. TLS only (port 6380); the access key goes into AIPROXY_REDIS_URL.
param location string
param tags object
param name string
param sku string
param capacity int

resource redis 'Microsoft.Cache/redis@2024-03-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: sku
      family: sku == 'Premium' ? 'P' : 'C'
      capacity: capacity
    }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    redisVersion: '6'
  }
}

output name string = redis.name
output hostName string = redis.properties.hostName
