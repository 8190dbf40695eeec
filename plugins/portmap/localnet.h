// plugins/portmap/localnet.h — lets 127.0.0.1-sourced connections to a host port reach the
// container: sets route_localnet=1 on the host interface that routes to the container (the
// bridge), found with one RTM_GETROUTE, as the reference does. The MASQUERADE rule then
// rewrites the 127.0.0.1 source before the packet leaves.
//
// Errors: throws cni::Error (kIOFailure) when the lookup or the sysctl write fails.
#pragma once

#include <string>

#include "cni/cni.h"

namespace ferry::portmap {

// The name of the interface the host routes `addr` out of; "" when there is no route.
std::string host_interface_towards(const cni::IPAddr& addr);

// route_localnet=1 on that interface (written only when not already 1). Returns its name.
std::string enable_route_localnet(const cni::IPAddr& container_v4);

}  // namespace ferry::portmap
