/* bpf/lib/lb.h — service load-balancing in the tc hooks (DESIGN.md "Services"): translate a
 * packet to a frontend into a packet to a backend (DNAT), keep the choice per flow, and translate
 * replies back (reverse NAT). The choice itself is lib/lb_select.h, the rewrites lib/nat.h, the
 * "no backend" reply lib/reject.h.
 *
 * A service flow has two ct entries (abi.h): the SERVICE entry, keyed by the ORIGINAL tuple
 * (client -> frontend), remembers the backend (backend_id) and the service (rev_nat); the flow's
 * own entry, keyed by the TRANSLATED tuple (client -> backend) and made by the hook's conntrack
 * step (ferry_ct_create), carries rev_nat, FERRY_CT_F_HAIRPIN / FERRY_CT_F_NODEPORT, policy and
 * counters. Service entries see only forward packets (the client's): they live for the
 * protocol's established lifetime from the latest one, FIN/RST shortens that to the TCP close
 * timeout, a new SYN on a closing one lengthens it again. conntrack.h never treats a SERVICE
 * entry as a flow entry (their keys can be the reverse of a reply: to-uplink sees replies whose
 * source is already the frontend).
 *
 * A known flow keeps its backend while that backend is in ferry_be_v1 (in any state: terminating
 * backends finish their flows; slot changes do not move flows); otherwise, and for a new flow, a
 * backend is chosen: pods and the node use set 1 of a Local frontend (client_internal), outside
 * clients set 0. A pod that reaches itself (the backend is its own address) also gets its source
 * rewritten to the service loopback address (ferry_config.loopback4/6): hairpin.
 *
 * Return values: FERRY_LB_* (>= 0) or a negative drop (NO_SERVICE for a DROP_EMPTY frontend,
 * CT_FULL, INVALID from nat.h). */
#ifndef FERRY_BPF_LIB_LB_H
#define FERRY_BPF_LIB_LB_H

#include "lib/common.h"
#include "lib/config.h"
#include "lib/counters.h"
#include "lib/conntrack.h"
#include "lib/lb_maps.h"
#include "lib/lb_select.h"
#include "lib/nat.h"
#include "lib/reject.h"

enum {
	FERRY_LB_PASS = 0,       /* not a frontend (or services off): nothing changed */
	FERRY_LB_TRANSLATED = 1, /* DNAT done; *nat says what the flow's ct entry records */
	FERRY_LB_REJECTED = 2,   /* no backend: the packet is now an ICMP unreachable, redirected
				  * back to the client (return TC_ACT_REDIRECT) */
};

/* What a translation leaves for the flow's ct entry, and what a reply's entry says about it. */
struct ferry_lb_nat {
	__u32 rev_nat;  /* service id (0 = not a service flow) */
	__u32 ct_flags; /* FERRY_CT_F_HAIRPIN / FERRY_CT_F_NODEPORT */
};

static __always_inline int ferry_services_on(const struct ferry_config *cfg)
{
	return cfg && (cfg->flags & FERRY_CFG_F_SERVICES);
}

static __always_inline int ferry_addr_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]));
}

/* A forward packet of a known service flow: refresh its SERVICE entry (lib comment above). */
static __always_inline void ferry_lb_service_seen(struct ferry_ct_value *ct, const struct ferry_pkt *pkt)
{
	__u8 state = ct->state, fl = pkt->tcp_flags;

	ct->last_seen_ns = bpf_ktime_get_ns();
	__sync_fetch_and_add(&ct->packets_fwd, 1);
	__sync_fetch_and_add(&ct->bytes_fwd, pkt->len);
	if (pkt->tuple.proto == IPPROTO_TCP) {
		if (fl & (FERRY_TCP_FIN | FERRY_TCP_RST))
			state = FERRY_CT_CLOSING;
		else if ((fl & (FERRY_TCP_SYN | FERRY_TCP_ACK)) == FERRY_TCP_SYN)
			state = FERRY_CT_ESTABLISHED;
	}
	if (state != ct->state) {
		ct->state = state;
		ct->lifetime_s = ferry_ct_lifetime(pkt->tuple.proto, state);
	}
}

/* Creates or replaces the SERVICE entry of this (original) tuple. */
static __always_inline int ferry_lb_service_create(struct ferry_pkt *pkt, __u32 service_id, __u32 backend_id)
{
	struct ferry_ct_value ct;

	ferry_ct_init(&ct, pkt, pkt->endpoint_id, FERRY_CT_ESTABLISHED);
	ct.flags = FERRY_CT_F_SERVICE;
	ct.backend_id = backend_id;
	ct.rev_nat = service_id;
	if (bpf_map_update_elem(&ferry_ct_v2, &pkt->tuple, &ct, BPF_ANY))
		return FERRY_DROP(pkt, FERRY_SRC_LB, FERRY_DROP_CT_FULL);
	return 0;
}

/* No usable backend: drop (FERRY_SVC_F_DROP_EMPTY) or reject. A reject is reported like a drop
 * (counter + event with FERRY_DROP_NO_SERVICE, so `ferryctl monitor` explains it) while the
 * packet, now the ICMP reply, is redirected. */
static __always_inline int ferry_lb_no_backend(struct __sk_buff *skb, struct ferry_pkt *pkt, __u32 svc_flags)
{
	if (svc_flags & FERRY_SVC_F_DROP_EMPTY)
		return FERRY_DROP(pkt, FERRY_SRC_LB, FERRY_DROP_NO_SERVICE);
	if (ferry_reject(skb, pkt) < 0)
		return FERRY_DROP(pkt, FERRY_SRC_LB, FERRY_DROP_NO_SERVICE);
	FERRY_DROP(pkt, FERRY_SRC_LB, FERRY_DROP_NO_SERVICE); /* where, for the event */
	ferry_count(FERRY_CTR_LB_REJECT_SENT, pkt->len);
	ferry_count(FERRY_CTR_DROP_BASE + FERRY_DROP_NO_SERVICE, pkt->len);
	ferry_emit_drop(pkt, FERRY_DROP_NO_SERVICE);
	return FERRY_LB_REJECTED;
}

/* ferry_lb_hash of the packet's tuple. Global: its byte loads stay in its own small frame. */
__noinline __u32 ferry_lb_flow_hash(const struct ferry_pkt *pkt)
{
	if (!pkt)
		return 0;
	return ferry_lb_hash(pkt->tuple.saddr, pkt->tuple.daddr, pkt->tuple.sport, pkt->tuple.dport,
			     pkt->tuple.proto);
}

/* The backend of this packet's flow to the frontend `svc` (a copy on the caller's stack): the one
 * its SERVICE entry remembers while it exists, else a new choice, which the SERVICE entry then
 * records (FERRY_CTR_LB_NEW). `uplink`: the client is outside the node (set 0), else a local
 * pod (set 1 of Local frontends). Returns 1 with *out = the backend, 0 when there is none, or a
 * negative drop. Global: verified once, its stack apart from the rewrite's. */
__noinline int ferry_lb_choose(struct ferry_pkt *pkt, const struct ferry_service_value *svc, int uplink,
			       struct ferry_backend_value *out)
{
	const struct ferry_backend_value *be = NULL;
	const struct ferry_config *cfg = ferry_node_config();
	struct ferry_ct_value *ct;
	__u32 backend_id = 0, hash;
	__u8 family;
	int ret;

	if (!pkt || !svc || !out || !cfg)
		return 0;
	family = pkt->tuple.family;

	ct = bpf_map_lookup_elem(&ferry_ct_v2, &pkt->tuple);
	if (ct && (ct->flags & FERRY_CT_F_SERVICE) && ct->rev_nat == svc->service_id) {
		be = ferry_lb_backend(ct->backend_id);
		if (be && be->family == family) {
			ferry_lb_service_seen(ct, pkt);
			*out = *be;
			return 1;
		}
	}
	hash = ferry_lb_flow_hash(pkt);
	backend_id = ferry_lb_select(svc, ferry_lb_set(svc, !uplink), family, pkt->tuple.saddr, hash,
				     cfg->flags & FERRY_CFG_F_MAGLEV, &be);
	if (!backend_id || !be || be->family != family)
		return 0;
	*out = *be;
	ret = ferry_lb_service_create(pkt, svc->service_id, backend_id);
	if (ret < 0)
		return ret;
	ferry_count(FERRY_CTR_LB_NEW, pkt->len);
	return 1;
}

/* Who the client of a translation is (ferry_lb_dnat). */
enum {
	FERRY_LB_CLIENT_POD = 0,         /* a local pod: hairpin when the backend is itself */
	FERRY_LB_CLIENT_OUTSIDE = 1,     /* from-uplink, Local frontend: the source is kept */
	FERRY_LB_CLIENT_OUTSIDE_MASQ = 2, /* from-uplink, Cluster: the kernel masquerades it */
};

/* DNAT to backend `be` (a copy on the caller's stack) for a client of kind `client`
 * (FERRY_LB_CLIENT_*) and what the flow's entry records in *nat (rev_nat is the caller's: the
 * service id). Outside clients: FERRY_CT_F_NODEPORT, and the masquerade mark for
 * FERRY_LB_CLIENT_OUTSIDE_MASQ; a pod whose backend is itself also gets the loopback source
 * (hairpin). Returns FERRY_LB_TRANSLATED or a negative drop. Global: verified once. */
__noinline int ferry_lb_dnat(struct __sk_buff *skb, struct ferry_pkt *pkt, const struct ferry_backend_value *be,
			     int client, struct ferry_lb_nat *nat)
{
	const struct ferry_config *cfg = ferry_node_config();
	int ret;

	if (!skb || !pkt || !be || !nat || !cfg)
		return FERRY_LB_PASS;
	ret = ferry_nat_rewrite(skb, pkt, FERRY_NAT_DST, be->addr, be->port);
	if (ret < 0)
		return ret;
	nat->ct_flags = 0;
	if (client != FERRY_LB_CLIENT_POD) {
		nat->ct_flags = FERRY_CT_F_NODEPORT;
		if (client == FERRY_LB_CLIENT_OUTSIDE_MASQ)
			skb->mark |= FERRY_MARK_MASQ;
	} else if (ferry_addr_equal(pkt->tuple.saddr, pkt->tuple.daddr)) {
		ret = ferry_nat_addr(skb, pkt, FERRY_NAT_SRC,
				     pkt->tuple.family == FERRY_AF_INET ? cfg->loopback4 : cfg->loopback6);
		if (ret < 0)
			return ret;
		nat->ct_flags = FERRY_CT_F_HAIRPIN;
	}
	return FERRY_LB_TRANSLATED;
}

/* The service step of a hook that sees clients' packets first (from-pod, from-uplink): one
 * service lookup per tracked IP packet while services are on, nothing else for a miss. From the
 * uplink only NodePort and externalIPs frontends are served. Returns FERRY_LB_* or a drop. */
static __always_inline int ferry_lb_frontend(struct __sk_buff *skb, struct ferry_pkt *pkt,
					     const struct ferry_config *cfg, int uplink, struct ferry_lb_nat *nat)
{
	const struct ferry_service_value *found;
	struct ferry_service_value svc;
	struct ferry_backend_value be;
	int ret, client;

	if (!ferry_services_on(cfg) || pkt->untracked)
		return FERRY_LB_PASS;
	found = ferry_lb_lookup(pkt->tuple.family, pkt->tuple.daddr, pkt->tuple.dport, pkt->tuple.proto);
	if (!found)
		return FERRY_LB_PASS;
	if (uplink && !(found->flags & (FERRY_SVC_F_NODEPORT | FERRY_SVC_F_EXTERNAL_IP)))
		return FERRY_LB_PASS;
	svc = *found;
	ret = ferry_lb_choose(pkt, &svc, uplink, &be);
	if (ret < 0)
		return ret;
	if (!ret)
		return ferry_lb_no_backend(skb, pkt, svc.flags);
	nat->rev_nat = svc.service_id;
	if (!uplink)
		client = FERRY_LB_CLIENT_POD;
	else
		client = svc.flags & FERRY_SVC_F_LOCAL ? FERRY_LB_CLIENT_OUTSIDE : FERRY_LB_CLIENT_OUTSIDE_MASQ;
	return ferry_lb_dnat(skb, pkt, &be, client, nat);
}

/* Reverse NAT of a reply whose flow entry has rev_nat (and flags): source := the frontend's
 * address:port (ferry_rnat_v1); hairpin: destination := the pod (the reply's source before).
 * A service id without a reverse-NAT entry (removed meanwhile) leaves the packet as it is.
 * Global: verified once for the four hooks. Returns 0 or a negative drop. */
__noinline int ferry_lb_rev_nat(struct __sk_buff *skb, struct ferry_pkt *pkt, __u32 rev_nat, __u32 ct_flags)
{
	const struct ferry_revnat_value *rn;
	__u8 pod[16];
	int ret;

	if (!skb || !pkt)
		return 0;
	rn = bpf_map_lookup_elem(&ferry_rnat_v1, &rev_nat);
	if (!rn || rn->family != pkt->tuple.family)
		return 0;
	if (ct_flags & FERRY_CT_F_HAIRPIN) {
		__builtin_memcpy(pod, pkt->tuple.saddr, sizeof(pod));
		ret = ferry_nat_addr(skb, pkt, FERRY_NAT_DST, pod);
		if (ret < 0)
			return ret;
	}
	ret = ferry_nat_rewrite(skb, pkt, FERRY_NAT_SRC, rn->addr, rn->port);
	if (ret < 0)
		return ret;
	ferry_count(FERRY_CTR_LB_REVNAT, pkt->len);
	return 0;
}

#endif /* FERRY_BPF_LIB_LB_H */
