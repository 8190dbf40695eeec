/* bpf/ferry_lxc.bpf.c — ferry's datapath: per pod on the pod's host-side veth, and per node on
 * the overlay (VXLAN) device:
 *   ferry_from_pod      tc ingress of the veth (packets the pod sends)
 *   ferry_to_pod        tc egress of the veth (packets the bridge/host stack sends to the pod)
 *   ferry_from_overlay  tc ingress of ferry_vxlan (decapsulated packets from other nodes)
 * The decisions are here; the mechanics are in lib/ (parse, conntrack, endpoints, overlay,
 * counters).
 * Every drop is a negative reason code that ferry_finish() counts and reports. See README.md. */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/endpoints.h"
#include "lib/conntrack.h"
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

	ret = ferry_ct_process(pkt, pkt->endpoint_id);
	if (ret < 0)
		return ret;

	/* SEAM (issue 5, policy): egress policy of the sending endpoint runs here for
	 * ret == FERRY_CT_RES_NEW only; its verdict is stored in the ct entry's flags so that
	 * ESTABLISHED/REPLY packets skip it. Nothing is stored in ct flags yet. */

	dst = ferry_endpoint_lookup(pkt->tuple.family, pkt->tuple.daddr);
	if (dst && (dst->flags & FERRY_EP_F_PROGRAMMED)) {
		/* SEAM (issue 5, policy): the destination's ingress policy must run here too,
		 * because the redirect below bypasses the destination's ferry_to_pod. */
		ret = ferry_deliver_local(skb, pkt, dst);
		if (ret < 0)
			return ret;
		ferry_count(FERRY_CTR_REDIRECT_LOCAL, pkt->len);
		return ret;
	}
	/* A pod of another node (its pod CIDR in the tunnel map, overlay on): straight to the
	 * overlay device, which encapsulates to that node. Only traffic that is not local pays
	 * the two lookups. The remote node's from-overlay runs the destination's ingress policy
	 * (SEAM there). */
	if (!dst) {
		cfg = ferry_overlay_config();
		if (cfg) {
			tun = ferry_tunnel_lookup(pkt->tuple.family, pkt->tuple.daddr);
			if (tun) {
				ret = ferry_send_tunnel(skb, pkt, cfg, tun);
				if (ret < 0)
					return ret;
				ferry_count(FERRY_CTR_REDIRECT_TUNNEL, pkt->len);
				return ret;
			}
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
	 * from-pod), so a flow created here has src_endpoint 0. */
	ret = ferry_ct_process(pkt, 0);
	if (ret < 0)
		return ret;

	/* SEAM (issue 5, policy): ingress policy of this endpoint for ret == FERRY_CT_RES_NEW,
	 * verdict cached in the ct entry's flags. */
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
	 * to-pod. */
	ret = ferry_ct_process(pkt, 0);
	if (ret < 0)
		return ret;

	/* SEAM (issue 5, policy): the destination's ingress policy runs here for
	 * ret == FERRY_CT_RES_NEW (verdict cached in the ct entry's flags), as in to-pod and in
	 * from-pod's local redirect: the redirect below bypasses the destination's ferry_to_pod. */
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
