// The container registry azd pushes the images to, and the pull-only identity every container
// app pulls them with: a user-assigned identity holding AcrPull on this registry and nothing
// else. The registry's admin user stays off, so no registry password exists anywhere.
// The apps attach this identity for image pulls only (identitySettings lifecycle 'None' in
// region.bicep), so the code inside an edge cannot mint a token with it.
param location string
param tags object
param name string
param pullIdentityName string

var roleAcrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: name
  location: location
  tags: tags
  sku: { name: 'Basic' }
  properties: {
    adminUserEnabled: false
  }
}

resource pullIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: pullIdentityName
  location: location
  tags: tags
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, pullIdentity.id, roleAcrPull)
  scope: registry
  properties: {
    principalId: pullIdentity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleAcrPull)
  }
}

output name string = registry.name
output loginServer string = registry.properties.loginServer
// Read by the region modules: a module's outputs exist only once all of its resources do, so
// the apps are created after the AcrPull assignment.
output pullIdentityName string = pullIdentity.name
