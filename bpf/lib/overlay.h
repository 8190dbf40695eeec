/* bpf/lib/overlay.h — the direct overlay path: the tunnel map (ferry_tun_v1: remote pod CIDR ->
 * remote VTEP) and the overlay part of the node config (lib/config.h: which device is the
 * overlay, its VTEP MAC).
 *
 * The overlay device is the node's classic VXLAN device (ferry_vxlan, not collect-metadata):
 * its FDB maps every remote VTEP MAC to that node's underlay address. So sending a pod's frame
 * to another node is an L2 rewrite (inner src = our VTEP MAC, inner dst = the remote VTEP MAC)
 * and a bpf_redirect() to the device's egress; the VXLAN driver encapsulates by FDB lookup. No
 * host routing, no netfilter on the way. The agent owns both maps; the datapath only reads. */
#ifndef FERRY_BPF_LIB_OVERLAY_H
#define FERRY_BPF_LIB_OVERLAY_H

#include "lib/common.h"
#include "lib/config.h"

/* Longest-prefix match over (family, address); keys as in abi.h. Not preallocated (LPM tries
 * never are). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, FERRY_TUNNELS_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ferry_tunnel_key);
	__type(value, struct ferry_tunnel_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_tun_v1 SEC(".maps");

/* True when the direct overlay path is on in `cfg` (ferry_node_config(); NULL = off). The
 * agent clears the flag (or never sets it) when the node has no overlay. */
static __always_inline int ferry_overlay_on(const struct ferry_config *cfg)
{
	return cfg && (cfg->flags & FERRY_CFG_F_OVERLAY) && cfg->overlay_ifindex;
}

/* The remote node whose pod CIDR holds `addr` (a 16-byte tuple address), or NULL. */
static __always_inline const struct ferry_tunnel_value *ferry_tunnel_lookup(__u8 family, const __u8 *addr)
{
	struct ferry_tunnel_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.prefixlen = 32 + (family == FERRY_AF_INET6 ? 128 : 32);
	key.family = family;
	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&ferry_tun_v1, &key);
}

/* Sends the frame to the remote node behind `tun`: rewrite the inner Ethernet header and hand it
 * to the overlay device's egress (TC_ACT_REDIRECT). The VXLAN driver finds the underlay
 * destination in its FDB by the destination MAC. */
static __always_inline int ferry_send_tunnel(struct __sk_buff *skb, struct ferry_pkt *pkt,
					     const struct ferry_config *cfg,
					     const struct ferry_tunnel_value *tun)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return FERRY_DROP(pkt, FERRY_SRC_OVERLAY, FERRY_DROP_INVALID);
	__builtin_memcpy(eth->h_dest, tun->vtep_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, cfg->vtep_mac, ETH_ALEN);
	return bpf_redirect(cfg->overlay_ifindex, 0);
}

#endif /* FERRY_BPF_LIB_OVERLAY_H */
