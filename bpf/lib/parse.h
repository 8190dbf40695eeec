/* bpf/lib/parse.h — header parsing: Ethernet, IPv4 (with options), IPv6 (fixed header only),
 * and the ports of TCP, UDP and SCTP; ICMP/ICMPv6 echo identifiers stand in for ports.
 *
 * Every read is bounds-checked against data_end (the verifier insists, and a pod can send any
 * bytes). Headers shorter than they must be are dropped as FERRY_DROP_INVALID. IPv6 extension
 * headers are not walked: such a packet is tracked as "other protocol" (proto = the next-header
 * value, ports 0). Later IPv4 fragments carry no L4 header and are not tracked. */
#ifndef FERRY_BPF_LIB_PARSE_H
#define FERRY_BPF_LIB_PARSE_H

#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>

#include "lib/common.h"

/* The UAPI has no SCTP header; the ports are all we read. */
struct ferry_sctphdr {
	__be16 source;
	__be16 dest;
	__be32 vtag;
	__le32 checksum;
};

/* <linux/icmp.h> drags in libc's <sys/socket.h> (through <linux/if.h>), which does not build for
 * the BPF target; the echo header is all we need. */
struct ferry_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;       /* echo request/reply only */
	__be16 sequence;
};
#define FERRY_ICMP_ECHOREPLY 0
#define FERRY_ICMP_ECHO 8

#define FERRY_IP_OFFSET 0x1fff /* fragment offset bits of iphdr.frag_off (host order) */

/* Linear bytes wanted before parsing: Ethernet + the longest IPv4 header + a TCP header. A veth
 * can hand over a skb whose headers are partly in paged data; direct packet access sees only the
 * linear part, so pull that much first (only when it is not already there). */
#define FERRY_PULL_LEN (ETH_HLEN + 60 + 20)

enum {
	FERRY_PARSE_IP = 0,     /* an IPv4/IPv6 packet, pkt->tuple filled in */
	FERRY_PARSE_NON_IP = 1, /* ARP and anything else that is not IP: not inspected */
};

static __always_inline void ferry_pull_headers(struct __sk_buff *skb)
{
	__u32 linear = skb->data_end - skb->data;

	if (linear < FERRY_PULL_LEN && skb->len > linear)
		bpf_skb_pull_data(skb, skb->len < FERRY_PULL_LEN ? skb->len : FERRY_PULL_LEN);
}

/* Ports (or echo identifier) of the L4 header at `l4`; `family` tells ICMP from ICMPv6. */
static __always_inline int ferry_parse_l4(struct ferry_pkt *pkt, void *l4, void *data_end)
{
	switch (pkt->tuple.proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || th->doff < 5)
			return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
		pkt->tuple.sport = th->source;
		pkt->tuple.dport = th->dest;
		pkt->tcp_flags = ((__u8 *)th)[13];
		return 0;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
		pkt->tuple.sport = uh->source;
		pkt->tuple.dport = uh->dest;
		return 0;
	}
	case IPPROTO_SCTP: {
		struct ferry_sctphdr *sh = l4;

		if ((void *)(sh + 1) > data_end)
			return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
		pkt->tuple.sport = sh->source;
		pkt->tuple.dport = sh->dest;
		return 0;
	}
	case IPPROTO_ICMP: {
		struct ferry_icmphdr *ih = l4;

		if (pkt->tuple.family != FERRY_AF_INET)
			return 0;
		if ((void *)(ih + 1) > data_end)
			return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
		if (ih->type == FERRY_ICMP_ECHO || ih->type == FERRY_ICMP_ECHOREPLY) {
			/* request and reply carry the same identifier: the reverse tuple matches */
			pkt->tuple.sport = ih->id;
			pkt->tuple.dport = ih->id;
		} else {
			pkt->untracked = 1; /* errors and other control messages: related, no entry */
		}
		return 0;
	}
	case IPPROTO_ICMPV6: {
		struct icmp6hdr *ih = l4;

		if (pkt->tuple.family != FERRY_AF_INET6)
			return 0;
		if ((void *)(ih + 1) > data_end)
			return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
		if (ih->icmp6_type == ICMPV6_ECHO_REQUEST || ih->icmp6_type == ICMPV6_ECHO_REPLY) {
			pkt->tuple.sport = ih->icmp6_identifier;
			pkt->tuple.dport = ih->icmp6_identifier;
		} else {
			pkt->untracked = 1; /* errors, NDP, MLD: related/control, no entry */
		}
		return 0;
	}
	default:
		return 0; /* other protocols: tracked by addresses and protocol only */
	}
}

static __always_inline int ferry_parse_ipv4(struct ferry_pkt *pkt, void *data, void *data_end)
{
	struct iphdr *ip4 = data + ETH_HLEN;
	__u32 hdr_len;

	if ((void *)(ip4 + 1) > data_end)
		return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
	if (ip4->version != 4 || ip4->ihl < 5)
		return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
	hdr_len = ip4->ihl * 4;
	if ((void *)ip4 + hdr_len > data_end)
		return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);

	pkt->tuple.family = FERRY_AF_INET;
	pkt->tuple.proto = ip4->protocol;
	__builtin_memcpy(pkt->tuple.saddr, &ip4->saddr, 4);
	__builtin_memcpy(pkt->tuple.daddr, &ip4->daddr, 4);

	if (ip4->frag_off & bpf_htons(FERRY_IP_OFFSET)) {
		pkt->untracked = 1; /* a later fragment: no L4 header to key a flow on */
		return FERRY_PARSE_IP;
	}
	pkt->l4_off = ETH_HLEN + hdr_len;
	return ferry_parse_l4(pkt, (void *)ip4 + hdr_len, data_end);
}

static __always_inline int ferry_parse_ipv6(struct ferry_pkt *pkt, void *data, void *data_end)
{
	struct ipv6hdr *ip6 = data + ETH_HLEN;

	if ((void *)(ip6 + 1) > data_end)
		return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);
	if (ip6->version != 6)
		return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);

	pkt->tuple.family = FERRY_AF_INET6;
	pkt->tuple.proto = ip6->nexthdr;
	__builtin_memcpy(pkt->tuple.saddr, &ip6->saddr, 16);
	__builtin_memcpy(pkt->tuple.daddr, &ip6->daddr, 16);
	pkt->l4_off = ETH_HLEN + sizeof(*ip6);
	return ferry_parse_l4(pkt, ip6 + 1, data_end);
}

/* Fills pkt->tuple (and tcp_flags/untracked). Returns FERRY_PARSE_IP, FERRY_PARSE_NON_IP or a
 * negative drop reason. Call ferry_pull_headers() first. */
static __always_inline int ferry_parse(struct __sk_buff *skb, struct ferry_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return FERRY_DROP(pkt, FERRY_SRC_PARSE, FERRY_DROP_INVALID);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		return ferry_parse_ipv4(pkt, data, data_end);
	case bpf_htons(ETH_P_IPV6):
		return ferry_parse_ipv6(pkt, data, data_end);
	default:
		return FERRY_PARSE_NON_IP;
	}
}

#endif /* FERRY_BPF_LIB_PARSE_H */
