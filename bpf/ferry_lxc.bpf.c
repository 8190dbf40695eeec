/* bpf/ferry_lxc.bpf.c — ferry's datapath: per pod on the pod's host-side veth, per node on the
 * overlay (VXLAN) device and on the NodePort devices (the underlay NIC):
 *   ferry_from_pod      tc ingress of the veth (packets the pod sends)
 *   ferry_to_pod        tc egress of the veth (packets the bridge/host stack sends to the pod)
 *   ferry_from_overlay  tc ingress of ferry_vxlan (decapsulated packets from other nodes)
 *   ferry_from_uplink   tc ingress of a NodePort device (NodePort / externalIPs clients)
 *   ferry_to_uplink     tc egress of a NodePort device (their replies)
 * The decisions are here; the mechanics are in lib/ (parse, conntrack, policy, endpoints,
 * overlay, lb + nat + reject, config, counters). One object: every hook shares every map.
 * Every drop is a negative reason code that ferry_finish() counts and reports. See README.md. */
#include "lib/common.h"
#include "lib/parse.h"
#include "lib/counters.h"
#include "lib/endpoints.h"
#include "lib/conntrack.h"
#include "lib/config.h"
#include "lib/policy.h"
#include "lib/overlay.h"
#include "lib/lb.h"

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
 * a redirect reaches without its to-pod), and create the entry of an allowed new flow (with the
 * service translation in *nat, lib/lb.h). A reply of a translated flow is translated back
 * (source := the frontend; hairpin: destination := the pod), so what follows sees the addresses
 * the receiver will. Not a NodePort flow's reply (FERRY_CT_F_NODEPORT): its source would become
 * the node's own address, which the stack drops as a martian on the way in; to-uplink translates
 * it on the way out. Returns an enum ferry_ct_result or a negative drop. `src_endpoint`: the
 * sending local pod, 0 if none. */
static __always_inline int ferry_track(struct __sk_buff *skb, struct ferry_pkt *pkt,
				       const struct ferry_config *cfg, __u32 src_endpoint,
				       const struct ferry_lb_nat *nat)
{
	struct ferry_ct_value *ct;
	__u32 rev, rev_nat, ct_flags;
	int res, ret;

	res = ferry_ct_lookup(pkt, &ct);
	ret = ferry_policy_enforce(pkt, cfg, ct, res, &rev);
	if (ret < 0)
		return ret;
	if (res == FERRY_CT_RES_NEW)
		return ferry_ct_create(pkt, src_endpoint, rev, nat->rev_nat, nat->ct_flags);
	if (res == FERRY_CT_RES_REPLY && ct && ct->rev_nat && !(ct->flags & FERRY_CT_F_NODEPORT)) {
		rev_nat = ct->rev_nat;
		ct_flags = ct->flags;
		ret = ferry_lb_rev_nat(skb, pkt, rev_nat, ct_flags);
		if (ret < 0)
			return ret;
	}
	return res;
}

static __always_inline int ferry_handle_from_pod(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	const struct ferry_tunnel_value *tun;
	const struct ferry_config *cfg;
	struct ferry_endpoint_value *dst;
	struct ferry_lb_nat nat = {};
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

	/* Services: a packet to a frontend goes to a backend from here on (DNAT before conntrack:
	 * the flow's entry is keyed, and policy judges, the translated tuple). No backend: the
	 * packet became the ICMP reject and goes back to the pod. */
	cfg = ferry_node_config();
	ret = ferry_lb_frontend(skb, pkt, cfg, 0, &nat);
	if (ret < 0)
		return ret;
	if (ret == FERRY_LB_REJECTED)
		return TC_ACT_REDIRECT;

	/* Policy: egress of this pod and, for a local destination, its ingress (the redirect
	 * below bypasses the destination's to-pod). */
	ret = ferry_track(skb, pkt, cfg, pkt->endpoint_id, &nat);
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
	struct ferry_lb_nat nat = {};
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
	ret = ferry_track(skb, pkt, ferry_node_config(), 0, &nat);
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
	struct ferry_lb_nat nat = {};
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
	ret = ferry_track(skb, pkt, ferry_node_config(), 0, &nat);
	if (ret < 0)
		return ret;

	ret = ferry_deliver_local(skb, pkt, dst);
	if (ret < 0)
		return ret;
	ferry_count(FERRY_CTR_REDIRECT_LOCAL, pkt->len);
	return ret;
}

/* A packet from outside the node on a NodePort device. Only NodePort and externalIPs frontends are
 * ours: translated to a backend (set 0), marked for the kernel's masquerade unless the frontend is
 * Local, tracked (the entry, FERRY_CT_F_NODEPORT, is judged for a local backend's ingress with the
 * client's identity, as to-pod would) and handed back to the kernel, which routes it to the
 * bridge or the overlay. Everything else (also what does not parse: not ours to judge) passes
 * untouched after one service lookup; non-IP after none. */
static __always_inline int ferry_handle_from_uplink(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	const struct ferry_config *cfg;
	struct ferry_lb_nat nat = {};
	int ret;

	ferry_pull_headers(skb);
	if (ferry_parse(skb, pkt) != FERRY_PARSE_IP)
		return TC_ACT_OK;
	cfg = ferry_node_config();
	ret = ferry_lb_frontend(skb, pkt, cfg, 1, &nat);
	if (ret < 0)
		return ret;
	if (ret == FERRY_LB_REJECTED)
		return TC_ACT_REDIRECT; /* back out of the uplink */
	if (ret == FERRY_LB_PASS)
		return TC_ACT_OK;
	ret = ferry_track(skb, pkt, cfg, 0, &nat);
	if (ret < 0)
		return ret;
	return TC_ACT_OK;
}

/* A packet the node sends out of a NodePort device: the reply of a NodePort connection (after
 * the kernel undid its masquerade) gets the frontend back as source; the reverse lookup is the
 * only map work for IP packets while services are on. Everything else passes untouched. */
static __always_inline int ferry_handle_to_uplink(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	struct ferry_ct_value *ct;
	int ret;

	ferry_pull_headers(skb);
	if (ferry_parse(skb, pkt) != FERRY_PARSE_IP || pkt->untracked || !ferry_services_on(ferry_node_config()))
		return TC_ACT_OK;
	ct = ferry_ct_lookup_reply(pkt, bpf_ktime_get_ns());
	if (ct && ct->rev_nat) {
		ret = ferry_lb_rev_nat(skb, pkt, ct->rev_nat, ct->flags);
		if (ret < 0)
			return ret;
	}
	return TC_ACT_OK;
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
FERRY_ENTRY(ferry_from_uplink, FERRY_HOOK_FROM_UPLINK, ifindex, FERRY_CTR_FROM_UPLINK, ferry_handle_from_uplink)
FERRY_ENTRY(ferry_to_uplink, FERRY_HOOK_TO_UPLINK, ifindex, FERRY_CTR_TO_UPLINK, ferry_handle_to_uplink)
