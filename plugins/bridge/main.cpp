// ferry-bridge: the CNI binary.
#include "bridge.h"

int main() { return ferry::cni::plugin_main(ferry::bridge::plugin()); }
