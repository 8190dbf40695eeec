/* bpf/lib/sock_lb.h — socket-level service load-balancing (cgroup sock_addr hooks) for the node's
 * own processes, as Cilium's bpf_sock.c: connect/sendmsg to a frontend are sent straight to a
 * backend, so no packet ever carries the frontend address and no conntrack entry is needed;
 * recvmsg/getpeername show the frontend again.
 *
 * Whose sockets: the programs hang on the cgroup v2 root, which every simulated node of this
 * kernel shares, and each node's agent attaches its own instance side by side. Only sockets of
 * the node's netns (bpf_get_netns_cookie == ferry_config.netns_cookie) with FERRY_CFG_F_SERVICES
 * on are translated; anything else is left alone.
 *
 * The client: the node's processes are one internal client (set 1 of a Local frontend). The
 * source address is not known at connect time, so the affinity key's client address is all
 * zero ("the node"), as Cilium keys socket-LB affinity by netns; the Maglev hash mixes the
 * socket cookie in place of the source address and port.
 *
 * Reverse translation: every translated socket gets a ferry_skrn_v1 entry (socket cookie,
 * backend address:port) -> frontend. recvmsg (UDP) and getpeername (any connected socket)
 * look it up by what they see and show the frontend. The map is an LRU: entries of closed
 * sockets age out, there is no per-socket delete.
 *
 * No backend (an empty set, or the chosen backend of another family): the hook refuses with
 * ECONNREFUSED via bpf_set_retval(-ECONNREFUSED) + return 0. Kernel 6.18 gives bpf_set_retval
 * to connect4/6 and sendmsg4/6 only (cgroup_common_func_proto withholds it from recvmsg,
 * getpeername and getsockname, whose verdict must be 1), and those are exactly the hooks
 * that choose a backend. Without the helper a 0 verdict would fail the call with EPERM. */
#ifndef FERRY_BPF_LIB_SOCK_LB_H
#define FERRY_BPF_LIB_SOCK_LB_H

#include "lib/common.h"
#include "lib/config.h"
#include "lib/counters.h"
#include "lib/lb_maps.h"
#include "lib/lb_select.h"

#define FERRY_ECONNREFUSED 111

/* A socket address as the hooks see it: user_ip4/user_ip6 + user_port. */
struct ferry_sock_addr {
	__u8 addr[16];  /* network order; IPv4 (also an IPv6 socket's ::ffff:a.b.c.d) in the first 4 bytes */
	__be16 port;    /* network order */
	__u8 family;    /* FERRY_AF_INET / FERRY_AF_INET6: how it is looked up */
	__u8 mapped;    /* an IPv6 socket's IPv4-mapped address: written back as ::ffff:a.b.c.d */
};

/* The node's config when this socket is the node's and services are on; NULL otherwise. */
static __always_inline const struct ferry_config *ferry_sock_node_config(struct bpf_sock_addr *ctx)
{
	const struct ferry_config *cfg = ferry_node_config();

	if (!cfg || !(cfg->flags & FERRY_CFG_F_SERVICES))
		return NULL;
	/* netns cookies start at 1: a config the agent has not written (0) matches nothing */
	if (bpf_get_netns_cookie(ctx) != cfg->netns_cookie)
		return NULL;
	return cfg;
}

static __always_inline void ferry_sock_read4(struct bpf_sock_addr *ctx, struct ferry_sock_addr *a)
{
	__u32 ip = ctx->user_ip4;

	__builtin_memset(a, 0, sizeof(*a));
	__builtin_memcpy(a->addr, &ip, 4);
	a->port = (__be16)ctx->user_port;
	a->family = FERRY_AF_INET;
}

/* user_ip6 is read and written one 32-bit word at a time (what the ctx rewriter accepts). */
static __always_inline void ferry_sock_read6(struct bpf_sock_addr *ctx, struct ferry_sock_addr *a)
{
	__u32 w[4];

	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
	__builtin_memset(a, 0, sizeof(*a));
	a->port = (__be16)ctx->user_port;
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) {
		__builtin_memcpy(a->addr, &w[3], 4);
		a->family = FERRY_AF_INET;
		a->mapped = 1;
	} else {
		__builtin_memcpy(a->addr, w, 16);
		a->family = FERRY_AF_INET6;
	}
}

static __always_inline void ferry_sock_read(struct bpf_sock_addr *ctx, int is6, struct ferry_sock_addr *a)
{
	if (is6)
		ferry_sock_read6(ctx, a);
	else
		ferry_sock_read4(ctx, a);
}

/* Writes addr:port (of `family`, IPv4-mapped when `mapped`) into the socket address. */
static __always_inline void ferry_sock_write(struct bpf_sock_addr *ctx, int is6, int mapped, const __u8 *addr,
					     __be16 port)
{
	__u32 w[4];

	__builtin_memcpy(w, addr, 16);
	if (!is6) {
		ctx->user_ip4 = w[0];
	} else if (mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = w[0];
	} else {
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx->user_port = (__u32)port;
}

static __always_inline void ferry_sock_revnat_key_of(struct ferry_sock_revnat_key *key, __u64 cookie,
						     const __u8 *addr, __be16 port, __u8 family)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->cookie = cookie;
	__builtin_memcpy(key->addr, addr, sizeof(key->addr));
	key->port = port;
	key->family = family;
}

/* connect4/6, sendmsg4/6: a frontend of the socket's protocol becomes one of its backends.
 * Returns the hook's verdict: 1 = go on (translated, or nothing to translate), 0 = refused
 * with ECONNREFUSED. */
static __always_inline int ferry_sock_xlate_fwd(struct bpf_sock_addr *ctx, int is6)
{
	const struct ferry_backend_value *be = NULL;
	const struct ferry_service_value *svc;
	const struct ferry_config *cfg;
	struct ferry_sock_revnat_value front;
	struct ferry_sock_revnat_key key;
	struct ferry_sock_addr dst;
	__u32 proto = ctx->protocol, id, hash;
	__u8 client[16];
	__u64 cookie;

	cfg = ferry_sock_node_config(ctx);
	if (!cfg)
		return 1;
	/* SCTP sockets do not exist on every kernel; when they do, they are a service protocol too */
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP)
		return 1;
	ferry_sock_read(ctx, is6, &dst);
	svc = ferry_lb_lookup(dst.family, dst.addr, dst.port, (__u8)proto);
	if (!svc)
		return 1;

	cookie = bpf_get_socket_cookie(ctx);
	__builtin_memset(client, 0, sizeof(client));
	__builtin_memcpy(client, &cookie, sizeof(cookie));
	hash = ferry_lb_hash(client, dst.addr, 0, dst.port, (__u8)proto);
	__builtin_memset(client, 0, sizeof(client)); /* the affinity client: "the node" */

	__builtin_memset(&front, 0, sizeof(front));
	__builtin_memcpy(front.addr, dst.addr, sizeof(front.addr));
	front.port = dst.port;
	front.family = dst.family;
	front.service_id = svc->service_id;

	id = ferry_lb_select(svc, ferry_lb_set(svc, 1), dst.family, client, hash, !!(cfg->flags & FERRY_CFG_F_MAGLEV),
			     &be);
	if (!id || !be || be->family != dst.family) {
		bpf_set_retval(-FERRY_ECONNREFUSED);
		return 0;
	}
	ferry_sock_revnat_key_of(&key, cookie, be->addr, be->port, be->family);
	ferry_sock_write(ctx, is6, dst.mapped, be->addr, be->port);
	bpf_map_update_elem(&ferry_skrn_v1, &key, &front, BPF_ANY);
	ferry_count(FERRY_CTR_LB_NEW, 0);
	return 1;
}

/* recvmsg4/6, getpeername4/6: a backend this socket was sent to shows as its frontend.
 * Always 1 (the only verdict these hooks may return). */
static __always_inline int ferry_sock_xlate_rev(struct bpf_sock_addr *ctx, int is6)
{
	const struct ferry_sock_revnat_value *front;
	struct ferry_sock_revnat_key key;
	struct ferry_sock_addr peer;

	if (!ferry_sock_node_config(ctx))
		return 1;
	ferry_sock_read(ctx, is6, &peer);
	ferry_sock_revnat_key_of(&key, bpf_get_socket_cookie(ctx), peer.addr, peer.port, peer.family);
	front = bpf_map_lookup_elem(&ferry_skrn_v1, &key);
	if (!front || front->family != peer.family)
		return 1;
	ferry_sock_write(ctx, is6, peer.mapped, front->addr, front->port);
	ferry_count(FERRY_CTR_LB_REVNAT, 0);
	return 1;
}

#endif /* FERRY_BPF_LIB_SOCK_LB_H */
