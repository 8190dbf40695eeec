// ferry-host-local: a drop-in for the reference host-local IPAM plugin (same config, same
// on-disk store), plus GC and STATUS.
#include "ipam/ipam.h"

int main() { return ferry::cni::plugin_main(ferry::ipam::host_local_plugin()); }
