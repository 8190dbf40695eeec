/* bpf/ferry_lxc.bpf.c — ferry's datapath: per pod on the pod's host-side veth, and per node on
 * the overlay (VXLAN) device:
 *   ferry_from_pod      tc ingress of the veth (packets the pod sends)
 *   ferry_to_pod        tc egress of the veth (packets the bridge/host stack sends to the pod)
 *   ferry_from_overlay  tc ingress of ferry_vxlan (decapsulated packets from other nodes)
 * The decisions are here; the mechanics are in lib/ (parse, conntrack, policy, endpoints,
 * overlay, config, counters).
 * Every drop is a negative reason code that ferry_finish() counts and reports. See README.md. */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/endpoints.h"
#include "lib/conntrack.h"
#include "lib/config.h"
#include "lib/policy.h"
#include "lib/overlay.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Anti-spoofing: the source must be an address of the endpoint behind this very veth. */
static __always_inline int ferry_check_source(struct ferry_pkt *pkt)
{
	struct ferry_endpoint_value *src;

	if (ferry_source_exempt(pkt))
		return 0;
	src = ferry_endpoint_lookup(pkt->tuple.family, pkt->tuple.saddr);
	if (!src || src->ifindex != pkt->ifindex)
		return FERRY_DROP(pkt, FERRY_SRC_LXC, FERRY_DROP_SPOOFED);
	pkt->endpoint_id = src->endpoint_id;
	return 0;
}

/* Conntrack and policy, the same in every hook: look the flow up, judge it when it is new or the
 * policy changed since it was judged (lib/policy.h: both local ends, also the destination that
 * a redirect reaches without its to-pod), and create the entry of an allowed new flow. Returns
 * an enum ferry_ct_result or a negative drop. `src_endpoint`: the sending local pod, 0 if none. */
static __always_inline int ferry_track(struct ferry_pkt *pkt, const struct ferry_config *cfg, __u32 src_endpoint)
{
	struct ferry_ct_value *ct;
	__u32 rev;
	int res, ret;

	res = ferry_ct_lookup(pkt, &ct);
	ret = ferry_policy_enforce(pkt, cfg, ct, res, &rev);
	if (ret < 0)
		return ret;
	if (res == FERRY_CT_RES_NEW)
		return ferry_ct_create(pkt, src_endpoint, rev);
	return res;
}

static __always_inline int ferry_handle_from_pod(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	const struct ferry_tunnel_value *tun;
	const struct ferry_config *cfg;
	struct ferry_endpoint_value *dst;
	int ret;

	ferry_pull_headers(skb);
	ret = ferry_parse(skb, pkt);
	if (ret < 0)
		return ret;
	if (ret == FERRY_PARSE_NON_IP) {
		ferry_count(FERRY_CTR_PASS_NON_IP, pkt->len);
		return TC_ACT_OK;
	}

	ret = ferry_check_source(pkt);
	if (ret < 0)
		return ret;

	/* SEAM (issue 6, services): DNAT of a service address to a backend goes here, before
	 * conntrack, so that the flow's entry is keyed by the translated tuple and the chosen
	 * backend is cached in the entry (ct flags / a service entry). */

	/* Policy: egress of this pod and, for a local destination, its ingress (the redirect
	 * below bypasses the destination's to-pod). */
	cfg = ferry_node_config();
	ret = ferry_track(pkt, cfg, pkt->endpoint_id);
	if (ret < 0)
		return ret;

	dst = ferry_endpoint_lookup(pkt->tuple.family, pkt->tuple.daddr);
	if (dst && (dst->flags & FERRY_EP_F_PROGRAMMED)) {
		ret = ferry_deliver_local(skb, pkt, dst);
		if (ret < 0)
			return ret;
		ferry_count(FERRY_CTR_REDIRECT_LOCAL, pkt->len);
		return ret;
	}
	/* A pod of another node (its pod CIDR in the tunnel map, overlay on): straight to the
	 * overlay device, which encapsulates to that node. Only traffic that is not local pays
	 * the tunnel lookup. The remote node's from-overlay judges the destination's ingress. */
	if (!dst && ferry_overlay_on(cfg)) {
		tun = ferry_tunnel_lookup(pkt->tuple.family, pkt->tuple.daddr);
		if (tun) {
			ret = ferry_send_tunnel(skb, pkt, cfg, tun);
			if (ret < 0)
				return ret;
			ferry_count(FERRY_CTR_REDIRECT_TUNNEL, pkt->len);
			return ret;
		}
	}
	/* Not local, or a local endpoint the agent has not finished programming (it sets
	 * FERRY_EP_F_PROGRAMMED last): the bridge and the host stack deliver it (a remote pod
	 * without the direct path: the kernel's overlay routes). */
	ferry_count(FERRY_CTR_TO_STACK, pkt->len);
	return TC_ACT_OK;
}

static __always_inline int ferry_handle_to_pod(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	int ret;

	ferry_pull_headers(skb);
	ret = ferry_parse(skb, pkt);
	if (ret < 0)
		return ret;
	if (ret == FERRY_PARSE_NON_IP) {
		ferry_count(FERRY_CTR_PASS_NON_IP, pkt->len);
		return TC_ACT_OK;
	}

	/* The sender is not a local pod we deliver for (local pod-to-pod is redirected by
	 * from-pod), so a flow created here has src_endpoint 0. Policy: a new flow is judged by
	 * this pod's ingress; a known one after a policy change by both local ends of its
	 * original tuple (a reply reaching us belongs to a flow this pod opened). */
	ret = ferry_track(pkt, ferry_node_config(), 0);
	if (ret < 0)
		return ret;
	return TC_ACT_OK;
}

/* A packet another node's pod sent us, decapsulated by the overlay device. Delivered straight
 * into a local programmed endpoint; anything else (node addresses, endpoints not yet
 * programmed, non-IP) goes on to the host stack, i.e. the kernel's routes and the bridge. */
static __always_inline int ferry_handle_from_overlay(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	struct ferry_endpoint_value *dst;
	int ret;

	ferry_pull_headers(skb);
	ret = ferry_parse(skb, pkt);
	if (ret < 0)
		return ret;
	if (ret == FERRY_PARSE_NON_IP) {
		ferry_count(FERRY_CTR_PASS_NON_IP, pkt->len);
		return TC_ACT_OK;
	}

	dst = ferry_endpoint_lookup(pkt->tuple.family, pkt->tuple.daddr);
	if (!dst || !(dst->flags & FERRY_EP_F_PROGRAMMED)) {
		/* Conntrack is left to whoever delivers it: to-pod for a pod reached over the
		 * bridge, so no flow is counted twice. */
		ferry_count(FERRY_CTR_TO_STACK, pkt->len);
		return TC_ACT_OK;
	}
	pkt->endpoint_id = dst->endpoint_id;

	/* The sender is a pod of another node, not a local endpoint: src_endpoint 0, as in
	 * to-pod. Policy: the destination's ingress, as in to-pod and in from-pod's local
	 * redirect (the redirect below bypasses the destination's to-pod). */
	ret = ferry_track(pkt, ferry_node_config(), 0);
	if (ret < 0)
		return ret;

	ret = ferry_deliver_local(skb, pkt, dst);
	if (ret < 0)
		return ret;
	ferry_count(FERRY_CTR_REDIRECT_LOCAL, pkt->len);
	return ret;
}

/* The common prologue of every entry point: a zeroed packet context, the hook's counter, and
 * ferry_finish() turning a negative drop code into a counter, an event and TC_ACT_SHOT. */
#define FERRY_ENTRY(name, hook_id, ifindex_field, counter, handler)            \
	SEC("tc")                                                             \
	int name(struct __sk_buff *skb)                                       \
	{                                                                     \
		struct ferry_pkt pkt;                                         \
                                                                              \
		__builtin_memset(&pkt, 0, sizeof(pkt));                       \
		pkt.hook = hook_id;                                           \
		pkt.len = skb->len;                                           \
		pkt.ifindex = skb->ifindex_field;                             \
		ferry_count(counter, pkt.len);                                \
		return ferry_finish(&pkt, handler(skb, &pkt));                \
	}

/* from-pod sees the packet on the veth's ingress, so the veth is the ingress interface. */
FERRY_ENTRY(ferry_from_pod, FERRY_HOOK_FROM_POD, ingress_ifindex, FERRY_CTR_FROM_POD, ferry_handle_from_pod)
FERRY_ENTRY(ferry_to_pod, FERRY_HOOK_TO_POD, ifindex, FERRY_CTR_TO_POD, ferry_handle_to_pod)
FERRY_ENTRY(ferry_from_overlay, FERRY_HOOK_FROM_OVERLAY, ifindex, FERRY_CTR_FROM_OVERLAY, ferry_handle_from_overlay)
