/* bpf/ferry_sock.bpf.c — socket-level service load-balancing for the node's own processes
 * (cgroup sock_addr hooks, as Cilium's socket LB): connect/sendmsg to a frontend go straight to
 * a backend; recvmsg/getpeername show the frontend again. Only sockets of the node's netns
 * (ferry_config.netns_cookie) are translated. The logic is lib/sock_lb.h; the agent attaches
 * every program here to the cgroup v2 root (agent/ebpf/sock_lb.h). */
#include "lib/sock_lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One entry point: SEC(section) int name(ctx) { return xlate(ctx, is6); } */
#define FERRY_SOCK_HOOK(section, name, xlate, is6)     \
	SEC(section)                                    \
	int name(struct bpf_sock_addr *ctx)             \
	{                                               \
		return xlate(ctx, is6);                 \
	}

FERRY_SOCK_HOOK("cgroup/connect4", ferry_sock4_connect, ferry_sock_xlate_fwd, 0)
FERRY_SOCK_HOOK("cgroup/connect6", ferry_sock6_connect, ferry_sock_xlate_fwd, 1)
/* UDP only: the kernel runs sendmsg hooks for datagrams with a destination address. Each one
 * chooses anew (as Cilium): an unconnected socket may reach several backends, and each reply
 * shows the frontend. */
FERRY_SOCK_HOOK("cgroup/sendmsg4", ferry_sock4_sendmsg, ferry_sock_xlate_fwd, 0)
FERRY_SOCK_HOOK("cgroup/sendmsg6", ferry_sock6_sendmsg, ferry_sock_xlate_fwd, 1)
FERRY_SOCK_HOOK("cgroup/recvmsg4", ferry_sock4_recvmsg, ferry_sock_xlate_rev, 0)
FERRY_SOCK_HOOK("cgroup/recvmsg6", ferry_sock6_recvmsg, ferry_sock_xlate_rev, 1)
FERRY_SOCK_HOOK("cgroup/getpeername4", ferry_sock4_getpeername, ferry_sock_xlate_rev, 0)
FERRY_SOCK_HOOK("cgroup/getpeername6", ferry_sock6_getpeername, ferry_sock_xlate_rev, 1)
