/* bpf/lib/reject.h — "connection refused" for a frontend without backends, as kube-proxy's
 * REJECT rule: the client's packet is turned in place into an ICMP destination-unreachable /
 * port-unreachable (IPv4 type 3 code 3, RFC 792) or ICMPv6 destination-unreachable / port-
 * unreachable (type 1 code 4, RFC 4443) and sent back out of the interface it came in on.
 *
 * The reply: Ethernet addresses swapped; a new IP header from the frontend address to the client
 * (TTL / hop limit 64); the ICMP header; then the quote of the client's packet: IPv4 its IP header
 * and the first 8 bytes after it, IPv6 as much of it as keeps the reply within the minimum IPv6
 * MTU (1280 bytes), at least its IPv6 header and 8 bytes. All checksums computed here.
 *
 * Errors: ferry_reject returns 0 (the redirect is set: return TC_ACT_REDIRECT) or -1 when the
 * packet is too short to quote or a helper refused; the caller then drops it. */
#ifndef FERRY_BPF_LIB_REJECT_H
#define FERRY_BPF_LIB_REJECT_H

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>

#include "lib/common.h"
#include "lib/parse.h"

#define FERRY_REJECT_TTL 64
#define FERRY_ICMP_DEST_UNREACH 3
#define FERRY_ICMP_PORT_UNREACH 3
#define FERRY_ICMPV6_DEST_UNREACH 1
#define FERRY_ICMPV6_PORT_UNREACH 4
#define FERRY_IPV6_MIN_MTU 1280
#define FERRY_CSUM_CHUNK 64

/* bpf_loop state of ferry_skb_csum: bytes [off, end) of the skb. */
struct ferry_csum_walk {
	struct __sk_buff *skb;
	__u32 off;
	__u32 end;
	__u32 sum;
	int err;
};

static long ferry_csum_step(__u64 index, void *data)
{
	struct ferry_csum_walk *w = data;
	__u8 buf[FERRY_CSUM_CHUNK + 4]; /* + the rounding of a tail to 4 bytes */
	__u32 n = w->off < w->end ? w->end - w->off : 0;
	__s64 sum;

	if (n > FERRY_CSUM_CHUNK)
		n = FERRY_CSUM_CHUNK;
	n &= 2 * FERRY_CSUM_CHUNK - 1; /* a no-op the verifier needs to see the bound */
	if (!n)
		return 1;
	__builtin_memset(buf, 0, sizeof(buf)); /* an odd tail is summed with zero padding */
	if (bpf_skb_load_bytes(w->skb, w->off, buf, n) < 0) {
		w->err = 1;
		return 1;
	}
	sum = bpf_csum_diff(NULL, 0, (__be32 *)buf, (n + 3) & ~3U, w->sum);
	if (sum < 0) {
		w->err = 1;
		return 1;
	}
	w->sum = (__u32)sum;
	w->off += n;
	return 0;
}

/* The one's-complement sum (unfolded, as bpf_csum_diff returns it) of `len` bytes of the skb at
 * `off`, added to `seed`. Global: the reject path is rare, verify it once. -1 on error. */
__noinline __s64 ferry_skb_csum(struct __sk_buff *skb, __u32 off, __u32 len, __u32 seed)
{
	struct ferry_csum_walk w = {};

	if (!skb)
		return -1;
	w.skb = skb;
	w.off = off;
	w.end = off + len;
	w.sum = seed;
	if (w.end > skb->len || w.end < off)
		return -1;
	bpf_loop((len + FERRY_CSUM_CHUNK - 1) / FERRY_CSUM_CHUNK, ferry_csum_step, &w, 0);
	if (w.err || w.off != w.end)
		return -1;
	return w.sum;
}

static __always_inline __u16 ferry_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Ethernet + IPv4 + ICMP header of the reply (42 bytes) and its IPv6 twin (62 bytes). */
struct ferry_reject4_head {
	__u8 eth_dst[ETH_ALEN];
	__u8 eth_src[ETH_ALEN];
	__be16 eth_proto;
	struct iphdr ip;
	struct ferry_icmphdr icmp;
} __attribute__((packed));

struct ferry_reject6_head {
	__u8 eth_dst[ETH_ALEN];
	__u8 eth_src[ETH_ALEN];
	__be16 eth_proto;
	struct ipv6hdr ip;
	struct icmp6hdr icmp;
} __attribute__((packed));

/* The IPv6 pseudo-header the ICMPv6 checksum covers (RFC 8200 8.1). */
struct ferry_ipv6_pseudo {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
	__be32 next;
};

/* Room for the reply's headers (`head` bytes, Ethernet included) in front of the client's IP
 * packet, and the packet cut after `quote` bytes of it. */
static __always_inline int ferry_reject_resize(struct __sk_buff *skb, __u32 head, __u32 quote)
{
	if (bpf_skb_adjust_room(skb, head - ETH_HLEN, BPF_ADJ_ROOM_MAC, 0) || bpf_skb_change_tail(skb, head + quote, 0))
		return -1;
	return 0;
}

static __always_inline int ferry_reject4(struct __sk_buff *skb, const struct ferry_pkt *pkt,
					 const __u8 *mac_client, const __u8 *mac_self)
{
	struct ferry_reject4_head h;
	__be32 ip[sizeof(struct iphdr) / 4];
	/* As much of the client's packet as fits in 576 bytes (RFC 1812 4.3.2.3), at least the IP
	 * header and 8 bytes. More than 8: a TCP segment from a pod usually carries a checksum the
	 * NIC would fill in (CHECKSUM_PARTIAL at offset 16 of its header), and the stack drops a
	 * packet whose pending checksum field lies past its end. */
	__u32 quote = skb->len - ETH_HLEN;
	__s64 sum;

	if (quote > 576 - sizeof(h.ip) - sizeof(h.icmp))
		quote = 576 - sizeof(h.ip) - sizeof(h.icmp);
	if (quote < pkt->l4_off - ETH_HLEN + 8)
		return -1;

	if (ferry_reject_resize(skb, sizeof(h), quote) < 0)
		return -1;

	__builtin_memset(&h, 0, sizeof(h));
	__builtin_memcpy(h.eth_dst, mac_client, ETH_ALEN);
	__builtin_memcpy(h.eth_src, mac_self, ETH_ALEN);
	h.eth_proto = bpf_htons(ETH_P_IP);
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(h.ip) + sizeof(h.icmp) + quote);
	h.ip.ttl = FERRY_REJECT_TTL;
	h.ip.protocol = IPPROTO_ICMP;
	__builtin_memcpy(&h.ip.saddr, pkt->tuple.daddr, 4); /* from the frontend */
	__builtin_memcpy(&h.ip.daddr, pkt->tuple.saddr, 4); /* to the client */
	__builtin_memcpy(ip, &h.ip, sizeof(ip)); /* aligned for the sum */
	sum = bpf_csum_diff(NULL, 0, ip, sizeof(ip), 0);
	if (sum < 0)
		return -1;
	h.ip.check = ferry_csum_fold(sum);
	h.icmp.type = FERRY_ICMP_DEST_UNREACH;
	h.icmp.code = FERRY_ICMP_PORT_UNREACH;
	if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
		return -1;
	sum = ferry_skb_csum(skb, ETH_HLEN + sizeof(h.ip), sizeof(h.icmp) + quote, 0);
	if (sum < 0)
		return -1;
	h.icmp.checksum = ferry_csum_fold(sum);
	return bpf_skb_store_bytes(skb, __builtin_offsetof(struct ferry_reject4_head, icmp.checksum), &h.icmp.checksum,
				   sizeof(h.icmp.checksum), 0) ? -1 : 0;
}

static __always_inline int ferry_reject6(struct __sk_buff *skb, const struct ferry_pkt *pkt,
					 const __u8 *mac_client, const __u8 *mac_self)
{
	struct ferry_reject6_head h;
	struct ferry_ipv6_pseudo ph;
	__u32 max = FERRY_IPV6_MIN_MTU - sizeof(h.ip) - sizeof(h.icmp);
	__u32 quote = skb->len - ETH_HLEN;
	__s64 sum;
	__u16 check;

	if (skb->len < ETH_HLEN + sizeof(struct ipv6hdr) + 8)
		return -1;
	if (quote > max)
		quote = max;
	if (ferry_reject_resize(skb, sizeof(h), quote) < 0)
		return -1;

	__builtin_memset(&h, 0, sizeof(h));
	__builtin_memcpy(h.eth_dst, mac_client, ETH_ALEN);
	__builtin_memcpy(h.eth_src, mac_self, ETH_ALEN);
	h.eth_proto = bpf_htons(ETH_P_IPV6);
	h.ip.version = 6;
	h.ip.payload_len = bpf_htons(sizeof(h.icmp) + quote);
	h.ip.nexthdr = IPPROTO_ICMPV6;
	h.ip.hop_limit = FERRY_REJECT_TTL;
	__builtin_memcpy(&h.ip.saddr, pkt->tuple.daddr, 16);
	__builtin_memcpy(&h.ip.daddr, pkt->tuple.saddr, 16);
	h.icmp.icmp6_type = FERRY_ICMPV6_DEST_UNREACH;
	h.icmp.icmp6_code = FERRY_ICMPV6_PORT_UNREACH;
	if (bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
		return -1;

	__builtin_memcpy(ph.saddr, pkt->tuple.daddr, 16);
	__builtin_memcpy(ph.daddr, pkt->tuple.saddr, 16);
	ph.len = bpf_htonl(sizeof(h.icmp) + quote);
	ph.next = bpf_htonl(IPPROTO_ICMPV6);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (sum < 0)
		return -1;
	sum = ferry_skb_csum(skb, ETH_HLEN + sizeof(h.ip), sizeof(h.icmp) + quote, (__u32)sum);
	if (sum < 0)
		return -1;
	check = ferry_csum_fold(sum);
	return bpf_skb_store_bytes(skb, __builtin_offsetof(struct ferry_reject6_head, icmp.icmp6_cksum), &check,
				   sizeof(check), 0) ? -1 : 0;
}

/* Turns the client's packet into the ICMP/ICMPv6 port-unreachable reply and redirects it to the
 * egress of the interface it arrived on (pkt->ifindex: the pod's veth, the uplink). */
__noinline int ferry_reject(struct __sk_buff *skb, const struct ferry_pkt *pkt)
{
	__u8 mac[2 * ETH_ALEN]; /* destination, source of the client's frame */
	int ret;

	if (!skb || !pkt)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, mac, sizeof(mac)))
		return -1;
	if (pkt->tuple.family == FERRY_AF_INET)
		ret = ferry_reject4(skb, pkt, mac + ETH_ALEN, mac);
	else
		ret = ferry_reject6(skb, pkt, mac + ETH_ALEN, mac);
	if (ret < 0)
		return -1;
	bpf_redirect(pkt->ifindex, 0);
	return 0;
}

#endif /* FERRY_BPF_LIB_REJECT_H */
