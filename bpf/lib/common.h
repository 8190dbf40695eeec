/* bpf/lib/common.h — what every ferry datapath helper shares: the parsed-packet record that the
 * hooks pass down by pointer, and the drop convention.
 *
 * Return convention of the helpers (as Cilium's DROP_* codes): 0 or a positive value = go on,
 * a negative value = -enum ferry_drop_reason. A helper that refuses a packet says so with
 * FERRY_DROP(), which also records the source file and line; the hook's entry point turns every
 * negative value into a counter and a ring-buffer event in ONE place (ferry_finish, counters.h). */
#ifndef FERRY_BPF_LIB_COMMON_H
#define FERRY_BPF_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include <ferry/abi.h>

#define FERRY_AF_INET 2
#define FERRY_AF_INET6 10

/* TCP flag bits of byte 13 of the TCP header. */
#define FERRY_TCP_FIN 0x01
#define FERRY_TCP_SYN 0x02
#define FERRY_TCP_RST 0x04
#define FERRY_TCP_ACK 0x10

/* One packet as the hooks see it. Lives on the BPF stack of the entry point. */
struct ferry_pkt {
	struct ferry_ct_key tuple; /* family, proto, addresses and ports, as on the wire (abi.h) */
	__u32 len;                 /* skb->len at entry: the byte count of every counter */
	__u32 ifindex;             /* where this hook runs: a pod's host-side veth, the overlay device */
	__u32 endpoint_id;         /* local endpoint involved (for events and ct), 0 if unknown */
	__u8 hook;                 /* FERRY_HOOK_FROM_POD / _TO_POD / _FROM_OVERLAY */
	__u8 tcp_flags;            /* byte 13 of the TCP header, 0 for other protocols */
	__u8 untracked;            /* no conntrack entry: ICMP errors/control, later fragments */
	__u8 drop_file;            /* where a drop was decided: enum ferry_source_file */
	__u16 drop_line;           /* ... and the __LINE__ there */
	__u8 direction;            /* FERRY_DROP_POLICY: FERRY_DIR_* of the denying endpoint */
	__u8 pad;
	__u16 l4_off;              /* offset of the L4 header in the frame (NAT rewrites, reject) */
};

/* Records where a packet was refused and evaluates to -reason. Use as `return FERRY_DROP(...)`. */
#define FERRY_DROP(pkt, file, reason)                  \
	({                                             \
		(pkt)->drop_file = (file);             \
		(pkt)->drop_line = __LINE__;           \
		-(int)(reason);                        \
	})

#endif /* FERRY_BPF_LIB_COMMON_H */
