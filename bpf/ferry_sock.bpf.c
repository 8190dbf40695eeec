/* bpf/ferry_sock.bpf.c — socket-level service load-balancing for the node's own processes
 * (cgroup sock_addr hooks, as Cilium's socket LB): connect/sendmsg to a frontend go straight to
 * a backend; recvmsg/getpeername show the frontend again. Only sockets of the node's netns
 * (ferry_config.netns_cookie) are translated. Placeholder until issue 6's socket LB lands. */
#include "lib/common.h"
#include "lib/config.h"
#include "lib/counters.h"
#include "lib/lb_maps.h"
#include "lib/lb_select.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keeps lb_select.h compiled in this object until the hooks land. */
SEC("cgroup/connect4")
int ferry_sock4_connect(struct bpf_sock_addr *ctx)
{
	const struct ferry_backend_value *be;
	const struct ferry_service_value *svc;
	__u8 addr[16] = {};

	__builtin_memcpy(addr, &ctx->user_ip4, 4);
	svc = ferry_lb_lookup(FERRY_AF_INET, addr, (__be16)ctx->user_port, IPPROTO_TCP);
	if (svc)
		ferry_lb_select(svc, 0, FERRY_AF_INET, addr, 0, 0, &be);
	return 1;
}
