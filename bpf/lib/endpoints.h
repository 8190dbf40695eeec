/* bpf/lib/endpoints.h — the local endpoint map (ferry_ep_v1: pod IP -> veth, MACs, id) and
 * delivery into a local pod. The agent owns the map's content; the datapath only reads it. */
#ifndef FERRY_BPF_LIB_ENDPOINTS_H
#define FERRY_BPF_LIB_ENDPOINTS_H

#include "lib/common.h"

/* One entry per IP of each local pod. Not preallocated: a node has tens of pods, not 64k. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_ENDPOINTS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ferry_endpoint_key);
	__type(value, struct ferry_endpoint_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_ep_v1 SEC(".maps");

/* `addr` is a 16-byte tuple address (IPv4 in the first 4 bytes, the rest zero). */
static __always_inline struct ferry_endpoint_value *ferry_endpoint_lookup(__u8 family,
									  const __u8 *addr)
{
	struct ferry_endpoint_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.family = family;
	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&ferry_ep_v1, &key);
}

/* Sources that are not a pod's own address yet legitimately leave it: IPv4 0.0.0.0 (DHCP-style),
 * IPv6 :: (DAD) and fe80::/10 (NDP, router solicitations). They are not checked against the map. */
static __always_inline int ferry_source_exempt(const struct ferry_pkt *pkt)
{
	const __u8 *s = pkt->tuple.saddr;
	const __u32 *w = (const __u32 *)s; /* saddr is 4-byte aligned in struct ferry_pkt */

	if (pkt->tuple.family == FERRY_AF_INET)
		return !w[0];
	if (s[0] == 0xfe && (s[1] & 0xc0) == 0x80)
		return 1;
	return !(w[0] | w[1] | w[2] | w[3]);
}

/* Hands the frame straight to the pod behind `ep`: the pod sees the gateway's MAC as source and
 * its own as destination, as if the bridge had routed it; bpf_redirect_peer() enters the pod's
 * netns at its eth0 without a second pass through the host side. Valid from tc ingress only. */
static __always_inline int ferry_deliver_local(struct __sk_buff *skb, struct ferry_pkt *pkt,
					       const struct ferry_endpoint_value *ep)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return FERRY_DROP(pkt, FERRY_SRC_LXC, FERRY_DROP_INVALID);
	__builtin_memcpy(eth->h_dest, ep->pod_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->host_mac, ETH_ALEN);
	return bpf_redirect_peer(ep->ifindex, 0);
}

#endif /* FERRY_BPF_LIB_ENDPOINTS_H */
