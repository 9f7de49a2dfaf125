// Optional network for VNet integration: a VNet with a subnet delegated to
// Microsoft.Web/serverFarms (the function app's outbound traffic) and a subnet for private
// endpoints, e.g. one to a MongoDB Atlas private link service.

@description('Name of the virtual network.')
param vnetName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnet for the function app integration (delegated to Microsoft.Web/serverFarms); /26 or larger.')
param appSubnetPrefix string = '10.40.1.0/26'

@description('Subnet for private endpoints.')
param privateEndpointSubnetPrefix string = '10.40.2.0/27'

@description('Resource id of the MongoDB Atlas private link service (from Atlas, "Network Access" > "Private Endpoint"). Empty: no private endpoint.')
param atlasPrivateLinkServiceId string = ''

@description('Give the app subnet a NAT gateway with one static public IP: a stable outbound address to put on the MongoDB Atlas IP access list.')
param enableNatGateway bool = true

@description('Name of the private endpoint to Atlas.')
param atlasPrivateEndpointName string = '${vnetName}-pe-atlas'

resource nsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: '${vnetName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource natIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (enableNatGateway) {
  name: '${vnetName}-nat-ip'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    publicIPAllocationMethod: 'Static'
    publicIPAddressVersion: 'IPv4'
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = if (enableNatGateway) {
  name: '${vnetName}-nat'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: natIp.id
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-app'
        properties: {
          addressPrefix: appSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          natGateway: enableNatGateway ? {
            id: natGateway.id
          } : null
          // The lake, checkpoint and vault accept this subnet in their network rules.
          serviceEndpoints: [
            {
              service: 'Microsoft.Storage'
            }
            {
              service: 'Microsoft.KeyVault'
            }
          ]
          delegations: [
            {
              name: 'serverFarms'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
      {
        name: 'snet-private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: nsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource appSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = {
  parent: vnet
  name: 'snet-app'
}

resource privateEndpointSubnet 'Microsoft.Network/virtualNetworks/subnets@2024-05-01' existing = {
  parent: vnet
  name: 'snet-private-endpoints'
}

// Atlas accepts the connection after you register the endpoint's resource id and private IP
// with Atlas (manual approval), see docs/deploy.md.
resource atlasEndpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = if (!empty(atlasPrivateLinkServiceId)) {
  name: atlasPrivateEndpointName
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnet.id
    }
    manualPrivateLinkServiceConnections: [
      {
        name: atlasPrivateEndpointName
        properties: {
          privateLinkServiceId: atlasPrivateLinkServiceId
          requestMessage: 'mongo-adls-bronze function app'
        }
      }
    ]
  }
}

output vnetId string = vnet.id
output appSubnetId string = appSubnet.id
output privateEndpointSubnetId string = privateEndpointSubnet.id
output natPublicIp string = enableNatGateway ? natIp.properties.ipAddress : ''
