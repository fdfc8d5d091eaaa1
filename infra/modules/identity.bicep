// The proxy's one user-assigned identity: the control plane mints Entra ID tokens as it
// (AZURE_CLIENT_ID), and it is the principal that gets roles on your AI resources.
param location string
param tags object
param name string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
