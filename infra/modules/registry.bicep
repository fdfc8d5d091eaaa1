// The container registry azd pushes both images to. Container apps pull with the registry's
// admin credential (a Container App secret), because edges must not carry an Azure identity,
// not even one that can only pull images.
param location string
param tags object
param name string

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: { name: 'Basic' }
  properties: {
    adminUserEnabled: true
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
