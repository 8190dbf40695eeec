/* bpf/ferry_sock.bpf.c — socket-level service load-balancing for the node's own processes
 * (cgroup sock_addr hooks, as Cilium's socket LB): connect/sendmsg to a frontend go straight to
 * a backend; recvmsg/getpeername show the frontend again. Only sockets of the node's netns
 * (ferry_config.netns_cookie) are translated. Placeholder until issue 6's socket LB lands. */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/lb_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
