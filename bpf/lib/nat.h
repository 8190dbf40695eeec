/* bpf/lib/nat.h — address and port rewrites of a parsed packet in place (DNAT, hairpin SNAT,
 * reverse NAT), with every checksum kept right:
 *   IPv4 header            incremental (bpf_l3_csum_replace)
 *   TCP, UDP, ICMPv6       incremental, addresses through the pseudo-header (BPF_F_PSEUDO_HDR);
 *                          the helpers also handle CHECKSUM_PARTIAL skbs (pods on a veth send
 *                          those: the field then holds the pseudo-header sum only)
 *   UDP over IPv4 with checksum 0 ("none") stays 0 (BPF_F_MARK_MANGLED_0)
 *   ICMP echo (IPv4)       no pseudo-header: an address change needs nothing; the identifier
 *                          (the "port" of the tuple) is never rewritten
 *   SCTP                   CRC32c over the whole packet, no pseudo-header: an address change needs
 *                          nothing, a port change recomputes the CRC (ferry_sctp_crc_update)
 * Offsets come from the parse (pkt->l4_off); pkt->tuple follows every rewrite, so later steps
 * (conntrack, policy, delivery) see the new addresses.
 *
 * Errors: a helper that refuses (a frame the parse accepted cannot make them fail) turns into
 * -FERRY_DROP_INVALID with FERRY_SRC_NAT and the line. */
#ifndef FERRY_BPF_LIB_NAT_H
#define FERRY_BPF_LIB_NAT_H

#include <linux/ip.h>
#include <linux/ipv6.h>

#include "lib/common.h"
#include "lib/parse.h"

#define FERRY_NAT_SRC 0
#define FERRY_NAT_DST 1

/* CRC32c (Castagnoli, reflected polynomial 0x82F63B78), one entry per byte value. */
static const __u32 ferry_crc32c_table[256] = {
	0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c,
	0x26a1e7e8, 0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b,
	0x4d43cfd0, 0xbf284cd3, 0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c,
	0xf165b798, 0x030e349b, 0xd7c45070, 0x25afd373, 0x36ff2087, 0xc494a384,
	0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54, 0x5d1d08bf, 0xaf768bbc,
	0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29, 0x33ed7d2a,
	0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
	0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa,
	0x30e349b1, 0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad,
	0x1642ae59, 0xe4292d5a, 0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a,
	0x7da08661, 0x8fcb0562, 0x9c9bf696, 0x6ef07595, 0x417b1dbc, 0xb3109ebf,
	0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0, 0x67dafa54, 0x95b17957,
	0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c, 0xfe53516f,
	0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
	0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f,
	0x3ac7f2eb, 0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7,
	0x61c69362, 0x93ad1061, 0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e,
	0x4767748a, 0xb50cf789, 0xeb1fcbad, 0x197448ae, 0x0a24bb5a, 0xf84f3859,
	0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46, 0x7198540d, 0x83f3d70e,
	0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5, 0xa55230e6,
	0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
	0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c,
	0x456cac67, 0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4,
	0xe9141340, 0x1b7f9043, 0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c,
	0x92a8fc17, 0x60c37f14, 0x73938ce0, 0x81f80fe3, 0x55326b08, 0xa759e80b,
	0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db, 0xf94ad42f, 0x0b21572c,
	0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6, 0x502036a5,
	0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
	0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975,
	0x0e330a81, 0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d,
	0x758fe5d6, 0x87e466d5, 0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905,
	0xd9f75af1, 0x2b9cd9f2, 0xff56bd19, 0x0d3d3e1a, 0x1e6dcdee, 0xec064eed,
	0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530, 0x0417b1db, 0xf67c32d8,
	0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc, 0x5a048dff,
	0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
	0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540,
	0x590ab964, 0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78,
	0x7fab5e8c, 0x8dc0dd8f, 0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee,
	0x24aa3f05, 0xd6c1bc06, 0xc5914ff2, 0x37faccf1, 0x69e9f0d5, 0x9b8273d6,
	0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9, 0x4f48173d, 0xbd23943e,
	0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a, 0xc69f7b69,
	0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
	0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351,
};

/* bpf_loop state of ferry_sctp_crc_update: bytes [off, end) of the skb, the checksum field's
 * four bytes read as zero. */
struct ferry_crc_walk {
	struct __sk_buff *skb;
	__u32 off;
	__u32 end;
	__u32 csum_off;
	__u32 crc;
	int err;
};

static long ferry_crc_step(__u64 index, void *data)
{
	struct ferry_crc_walk *w = data;
	__u8 b[4] = {};
	__u32 n = w->off < w->end ? w->end - w->off : 0, crc = w->crc;
	int i;

	if (n > 4)
		n = 4;
	n &= 7; /* a no-op the verifier needs to see the bound */
	if (!n)
		return 1;
	if (bpf_skb_load_bytes(w->skb, w->off, b, n) < 0) {
		w->err = 1;
		return 1;
	}
	if (w->off == w->csum_off)
		__builtin_memset(b, 0, sizeof(b));
#pragma unroll
	for (i = 0; i < 4; i++)
		if (i < n)
			crc = ferry_crc32c_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	w->crc = crc;
	w->off += n;
	return 0;
}

/* Recomputes the SCTP checksum of the packet whose SCTP header starts at `l4_off`: CRC32c over
 * the common header (checksum field as zero) and every chunk, stored little-endian (RFC 9260
 * appendix A). Global (verified once): SCTP packets only pay it when a port changes. Returns 0
 * or -1 when the packet could not be read or written. */
__noinline int ferry_sctp_crc_update(struct __sk_buff *skb, __u32 l4_off)
{
	struct ferry_crc_walk w = {};
	__u8 out[4];
	__u32 crc;

	if (!skb)
		return -1;
	w.skb = skb;
	w.off = l4_off;
	w.end = skb->len;
	w.csum_off = l4_off + 8;
	w.crc = 0xffffffff;
	if (w.end <= w.csum_off + 4)
		return -1;
	bpf_loop((w.end - w.off + 3) / 4, ferry_crc_step, &w, 0);
	if (w.err || w.off != w.end)
		return -1;
	crc = ~w.crc;
	out[0] = crc;
	out[1] = crc >> 8;
	out[2] = crc >> 16;
	out[3] = crc >> 24;
	return bpf_skb_store_bytes(skb, w.csum_off, out, 4, 0) ? -1 : 0;
}

/* Offset of the checksum that covers the L4 ports/pseudo-header, 0 when there is none to update
 * incrementally (SCTP, ICMP over IPv4 for addresses, other protocols). `flags` gets the
 * bpf_l4_csum_replace flags the protocol needs. */
static __always_inline __u32 ferry_l4_csum_off(const struct ferry_pkt *pkt, __u64 *flags)
{
	switch (pkt->tuple.proto) {
	case IPPROTO_TCP:
		*flags = 0;
		return pkt->l4_off + 16;
	case IPPROTO_UDP:
		*flags = BPF_F_MARK_MANGLED_0;
		return pkt->l4_off + 6;
	case IPPROTO_ICMPV6:
		*flags = 0;
		return pkt->l4_off + 2;
	default:
		*flags = 0;
		return 0;
	}
}

/* Sets the source (FERRY_NAT_SRC) or destination (FERRY_NAT_DST) address to `addr` (16-byte
 * tuple address of the packet's family). Returns 0 or a negative drop. */
static __always_inline int ferry_nat_addr(struct __sk_buff *skb, struct ferry_pkt *pkt, int which,
					  const __u8 *addr)
{
	__u8 *cur = which == FERRY_NAT_DST ? pkt->tuple.daddr : pkt->tuple.saddr;
	__u32 csum_off, old4, new4, old6[4], new6[4];
	__u64 l4_flags;
	__s64 diff;

	csum_off = ferry_l4_csum_off(pkt, &l4_flags);
	if (pkt->tuple.family == FERRY_AF_INET) {
		__builtin_memcpy(&old4, cur, 4);
		__builtin_memcpy(&new4, addr, 4);
		if (old4 == new4)
			return 0;
		if (bpf_skb_store_bytes(skb, ETH_HLEN + (which == FERRY_NAT_DST ? 16 : 12), &new4, 4, 0) ||
		    bpf_l3_csum_replace(skb, ETH_HLEN + 10, old4, new4, 4))
			return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
		if (pkt->tuple.proto == IPPROTO_ICMPV6)
			csum_off = 0; /* ICMPv6 in IPv4 is nonsense: leave it */
		if (csum_off && bpf_l4_csum_replace(skb, csum_off, old4, new4, l4_flags | BPF_F_PSEUDO_HDR | 4))
			return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
		__builtin_memcpy(cur, &new4, 4);
		return 0;
	}
	__builtin_memcpy(old6, cur, 16);
	__builtin_memcpy(new6, addr, 16);
	if (!((old6[0] ^ new6[0]) | (old6[1] ^ new6[1]) | (old6[2] ^ new6[2]) | (old6[3] ^ new6[3])))
		return 0;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + (which == FERRY_NAT_DST ? 24 : 8), new6, 16, 0))
		return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
	if (csum_off) {
		diff = bpf_csum_diff(old6, 16, new6, 16, 0);
		if (diff < 0 || bpf_l4_csum_replace(skb, csum_off, 0, (__u32)diff, l4_flags | BPF_F_PSEUDO_HDR))
			return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
	}
	__builtin_memcpy(cur, new6, 16);
	return 0;
}

/* Sets the source or destination port (TCP, UDP, SCTP; network order). ICMP echo identifiers and
 * port-less protocols are left alone. Returns 0 or a negative drop. */
static __always_inline int ferry_nat_port(struct __sk_buff *skb, struct ferry_pkt *pkt, int which, __be16 port)
{
	__be16 *cur = which == FERRY_NAT_DST ? &pkt->tuple.dport : &pkt->tuple.sport;
	__be16 old = *cur;
	__u32 csum_off;
	__u64 l4_flags;

	if (old == port)
		return 0;
	switch (pkt->tuple.proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		break;
	default:
		return 0;
	}
	if (bpf_skb_store_bytes(skb, pkt->l4_off + (which == FERRY_NAT_DST ? 2 : 0), &port, 2, 0))
		return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
	if (pkt->tuple.proto == IPPROTO_SCTP) {
		if (ferry_sctp_crc_update(skb, pkt->l4_off) < 0)
			return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
	} else {
		csum_off = ferry_l4_csum_off(pkt, &l4_flags);
		if (bpf_l4_csum_replace(skb, csum_off, old, port, l4_flags | 2))
			return FERRY_DROP(pkt, FERRY_SRC_NAT, FERRY_DROP_INVALID);
	}
	*cur = port;
	return 0;
}

/* Address and port in one go (the usual DNAT / reverse NAT step). */
static __always_inline int ferry_nat_rewrite(struct __sk_buff *skb, struct ferry_pkt *pkt, int which,
					     const __u8 *addr, __be16 port)
{
	int ret = ferry_nat_addr(skb, pkt, which, addr);

	if (ret < 0)
		return ret;
	return ferry_nat_port(skb, pkt, which, port);
}

#endif /* FERRY_BPF_LIB_NAT_H */
