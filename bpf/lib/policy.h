/* bpf/lib/policy.h — NetworkPolicy enforcement: the ipcache (ferry_ipc_v1: IP/prefix -> security
 * identity) and the allow entries of the local endpoints (ferry_pol_v1), both LPM tries that the
 * agent writes (the compiler in policy/ decides their content; layouts in abi.h).
 *
 * When a flow is judged: when it is new, and when its ct entry was judged under another policy
 * revision than the node's (ferry_config.policy_rev, bumped by the agent after every change). So
 * an established flow costs one comparison, replies are never looked up on their own, and a
 * policy change re-judges every flow at its next packet in whichever hook sees it: flows still
 * allowed keep going (their entry records the new revision), a revoked flow loses its ct entry
 * and that packet is dropped.
 * What is judged: both local ends of the flow's ORIGINAL tuple (the ct key, i.e. the first
 * packet's direction): egress of the original source if it is a local endpoint, ingress of the
 * original destination if it is one. The peer is the ipcache identity of the other address (no
 * prefix = world), the port is the original destination port. Per endpoint and direction the
 * entries are tried most specific first: (peer, proto, port), (peer, any proto), (any peer,
 * proto, port), (any peer, any proto); the port part of a key is a prefix, so a port range is a
 * few entries. No entry = denied (an endpoint whose entries are not written yet is closed).
 * Untracked packets (ICMP errors, later fragments) are not judged. */
#ifndef FERRY_BPF_LIB_POLICY_H
#define FERRY_BPF_LIB_POLICY_H

#include "lib/common.h"
#include "lib/config.h"
#include "lib/conntrack.h"
#include "lib/endpoints.h"

/* Longest-prefix match over (family, address), keys as the tunnel map's. Not preallocated. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FERRY_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ferry_ipcache_key);
	__type(value, struct ferry_ipcache_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_ipc_v1 SEC(".maps");

/* (endpoint, peer identity, direction, proto) exact, destination port as a prefix. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FERRY_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ferry_policy_key);
	__type(value, struct ferry_policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_pol_v1 SEC(".maps");

/* The security identity of a 16-byte tuple address; world when no prefix covers it. */
static __always_inline __u32 ferry_identity_of(__u8 family, const __u8 *addr)
{
	const struct ferry_ipcache_value *v;
	struct ferry_ipcache_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.prefixlen = 32 + (family == FERRY_AF_INET6 ? 128 : 32);
	key.family = family;
	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	v = bpf_map_lookup_elem(&ferry_ipc_v1, &key);
	return v ? v->identity : FERRY_IDENTITY_WORLD;
}

/* 1 when an allow entry of `endpoint_id` in `direction` covers (peer, proto, dport), else 0.
 * This and ferry_policy_judge are global (non-static) BPF functions: called, not inlined, and
 * verified once each instead of once per call site, which keeps the hooks small (judging runs
 * once per flow and policy revision, the call costs nothing that matters). */
__noinline int ferry_policy_allows(__u32 endpoint_id, __u32 peer, __u32 direction, __u32 proto,
					  __u32 dport)
{
	struct ferry_policy_key key;

	key.prefixlen = FERRY_POLICY_KEY_EXACT_BITS + 16;
	key.endpoint_id = endpoint_id;
	key.identity = peer;
	key.direction = direction;
	key.proto = proto;
	key.dport = dport;
	if (bpf_map_lookup_elem(&ferry_pol_v1, &key))
		return 1;
	key.proto = 0; /* (peer, any protocol): entries of prefix length 80 match any port */
	key.dport = 0;
	if (bpf_map_lookup_elem(&ferry_pol_v1, &key))
		return 1;
	key.identity = FERRY_IDENTITY_ANY;
	key.proto = proto;
	key.dport = dport;
	if (bpf_map_lookup_elem(&ferry_pol_v1, &key))
		return 1;
	key.proto = 0;
	key.dport = 0;
	return bpf_map_lookup_elem(&ferry_pol_v1, &key) != NULL;
}

/* Judges the flow of this packet for both local ends of its original tuple (`reply`: the packet
 * travels against it). Returns 0 when allowed, else a negative drop with pkt->endpoint_id and
 * pkt->direction naming the endpoint and direction that denied it. */
__noinline int ferry_policy_judge(struct ferry_pkt *pkt, int reply)
{
	const __u8 *src, *dst;
	struct ferry_endpoint_value *ep;
	__be16 dport;
	__u8 family, proto;

	if (!pkt) /* a global function is verified on its own: the verifier wants the check */
		return 0;
	src = reply ? pkt->tuple.daddr : pkt->tuple.saddr;
	dst = reply ? pkt->tuple.saddr : pkt->tuple.daddr;
	dport = reply ? pkt->tuple.sport : pkt->tuple.dport;
	family = pkt->tuple.family;
	proto = pkt->tuple.proto;

	ep = ferry_endpoint_lookup(family, src);
	if (ep && !ferry_policy_allows(ep->endpoint_id, ferry_identity_of(family, dst), FERRY_DIR_EGRESS,
				       proto, dport)) {
		pkt->endpoint_id = ep->endpoint_id;
		pkt->direction = FERRY_DIR_EGRESS;
		return FERRY_DROP(pkt, FERRY_SRC_POLICY, FERRY_DROP_POLICY);
	}
	ep = ferry_endpoint_lookup(family, dst);
	if (ep && !ferry_policy_allows(ep->endpoint_id, ferry_identity_of(family, src), FERRY_DIR_INGRESS,
				       proto, dport)) {
		pkt->endpoint_id = ep->endpoint_id;
		pkt->direction = FERRY_DIR_INGRESS;
		return FERRY_DROP(pkt, FERRY_SRC_POLICY, FERRY_DROP_POLICY);
	}
	return 0;
}

/* The policy step of every hook, right after ferry_ct_lookup (`ct`, `ct_result`). Returns 0 to go
 * on, with *rev = the revision a new flow's entry records (0 while policy is off), or a negative
 * drop after deleting the flow's entry. */
static __always_inline int ferry_policy_enforce(struct ferry_pkt *pkt, const struct ferry_config *cfg,
						struct ferry_ct_value *ct, int ct_result, __u32 *rev)
{
	int ret;

	*rev = 0;
	if (!cfg || !(cfg->flags & FERRY_CFG_F_POLICY) || ct_result == FERRY_CT_RES_RELATED)
		return 0;
	*rev = cfg->policy_rev;
	if (ct && ct->policy_rev == *rev)
		return 0;
	ret = ferry_policy_judge(pkt, ct_result == FERRY_CT_RES_REPLY);
	if (ret < 0) {
		if (ct)
			ferry_ct_delete(pkt, ct_result);
		return ret;
	}
	if (ct)
		ct->policy_rev = *rev;
	return 0;
}

#endif /* FERRY_BPF_LIB_POLICY_H */
