/* bpf/lib/conntrack.h — connection tracking in ferry_ct_v2 (LRU hash, abi.h).
 *
 * One entry per flow, keyed by the tuple of the flow's first packet. A packet is looked up with
 * its own tuple (a hit = the original direction) and then with the reversed tuple (a hit = a
 * reply); a miss creates the entry once policy allowed the flow. Every hook looks up once per IP
 * packet (ferry_ct_lookup): it is the first map work on the fast path, and per-flow decisions are
 * cached in the entry so that established flows need no further lookups: the policy verdict as
 * `policy_rev` (the revision it was judged under, lib/policy.h), the reverse translation of a
 * service flow as `rev_nat` + `flags` (lib/lb.h). SERVICE entries (FERRY_CT_F_SERVICE, keyed
 * client -> frontend, lib/lb.h) belong to the load balancer: the lookups here never return one.
 *
 * States and lifetimes (seconds after last_seen_ns; the agent's GC expires entries):
 *   created by a TCP packet            NEW, FERRY_CT_TIMEOUT_TCP_SYN
 *   created by another protocol        NEW, timeout of the protocol (UDP/ICMP/other)
 *   first reply seen                   ESTABLISHED, FERRY_CT_TIMEOUT_TCP / protocol timeout
 *   TCP FIN or RST either way          CLOSING, FERRY_CT_TIMEOUT_TCP_CLOSE
 *   TCP SYN (no ACK) on a CLOSING flow NEW again (the 5-tuple is being reused)
 * Packets that carry no flow identity (ICMP errors and control messages, later IPv4 fragments)
 * pass as "related" without an entry. */
#ifndef FERRY_BPF_LIB_CONNTRACK_H
#define FERRY_BPF_LIB_CONNTRACK_H

#include "lib/common.h"
#include "lib/counters.h"

#define FERRY_EEXIST 17

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FERRY_CT_MAX);
	__type(key, struct ferry_ct_key);
	__type(value, struct ferry_ct_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_ct_v2 SEC(".maps");

/* What the lookup found; the hooks branch on it. */
enum ferry_ct_result {
	FERRY_CT_RES_NEW = 0,         /* no entry exists (ferry_ct_create makes it) */
	FERRY_CT_RES_ESTABLISHED = 1, /* entry hit in the original direction */
	FERRY_CT_RES_REPLY = 2,       /* entry hit with the reversed tuple */
	FERRY_CT_RES_RELATED = 3,     /* untracked packet (ICMP error/control, later fragment) */
};

static __always_inline __u32 ferry_ct_lifetime(__u8 proto, __u8 state)
{
	switch (proto) {
	case IPPROTO_TCP:
		if (state == FERRY_CT_CLOSING)
			return FERRY_CT_TIMEOUT_TCP_CLOSE;
		return state == FERRY_CT_ESTABLISHED ? FERRY_CT_TIMEOUT_TCP : FERRY_CT_TIMEOUT_TCP_SYN;
	case IPPROTO_UDP:
		return FERRY_CT_TIMEOUT_UDP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return FERRY_CT_TIMEOUT_ICMP;
	default:
		return FERRY_CT_TIMEOUT_OTHER;
	}
}

static __always_inline void ferry_ct_reverse(struct ferry_ct_key *rev, const struct ferry_ct_key *key)
{
	__builtin_memcpy(rev->saddr, key->daddr, sizeof(rev->saddr));
	__builtin_memcpy(rev->daddr, key->saddr, sizeof(rev->daddr));
	rev->sport = key->dport;
	rev->dport = key->sport;
	rev->proto = key->proto;
	rev->family = key->family;
	rev->pad[0] = 0;
	rev->pad[1] = 0;
}

/* State transition for a packet of an existing flow; writes only when something changes. */
static __always_inline void ferry_ct_update_state(struct ferry_ct_value *ct, const struct ferry_pkt *pkt,
						  int reply)
{
	__u8 state = ct->state;

	if (pkt->tuple.proto == IPPROTO_TCP) {
		__u8 fl = pkt->tcp_flags;

		if (fl & (FERRY_TCP_FIN | FERRY_TCP_RST))
			state = FERRY_CT_CLOSING;
		else if (state == FERRY_CT_CLOSING && !reply &&
			 (fl & (FERRY_TCP_SYN | FERRY_TCP_ACK)) == FERRY_TCP_SYN)
			state = FERRY_CT_NEW;
		else if (state == FERRY_CT_NEW && reply)
			state = FERRY_CT_ESTABLISHED;
	} else if (state == FERRY_CT_NEW && reply) {
		state = FERRY_CT_ESTABLISHED;
	}

	if (state != ct->state) {
		ct->state = state;
		ct->lifetime_s = ferry_ct_lifetime(pkt->tuple.proto, state);
		if (state == FERRY_CT_NEW) { /* reused tuple: forget the old connection's flags */
			ct->tcp_flags_fwd = 0;
			ct->tcp_flags_rev = 0;
		}
	}
}

/* What every new entry starts with (flows here, SERVICE entries in lib/lb.h): timestamps, the
 * first packet's counters and flags, `state` (CLOSING instead for a TCP FIN/RST) and its
 * lifetime; everything else zero. */
static __always_inline void ferry_ct_init(struct ferry_ct_value *ct, const struct ferry_pkt *pkt,
					  __u32 src_endpoint, __u8 state)
{
	__u64 now = bpf_ktime_get_ns();

	__builtin_memset(ct, 0, sizeof(*ct));
	ct->created_ns = now;
	ct->last_seen_ns = now;
	ct->packets_fwd = 1;
	ct->bytes_fwd = pkt->len;
	ct->src_endpoint = src_endpoint;
	ct->tcp_flags_fwd = pkt->tcp_flags;
	ct->state = state;
	if (pkt->tuple.proto == IPPROTO_TCP && (pkt->tcp_flags & (FERRY_TCP_FIN | FERRY_TCP_RST)))
		ct->state = FERRY_CT_CLOSING;
	ct->lifetime_s = ferry_ct_lifetime(pkt->tuple.proto, ct->state);
}

/* Creates the entry of a new flow, judged allowed under `policy_rev` (0: policy is off, never
 * judged). A translated service flow passes its service id (`rev_nat`, replies get the frontend
 * back) and FERRY_CT_F_HAIRPIN / FERRY_CT_F_NODEPORT (`flags`); 0 and 0 otherwise. Returns
 * FERRY_CT_RES_NEW or a negative drop reason. */
static __always_inline int ferry_ct_create(struct ferry_pkt *pkt, __u32 src_endpoint, __u32 policy_rev,
					   __u32 rev_nat, __u8 flags)
{
	struct ferry_ct_value ct;
	long err;

	ferry_ct_init(&ct, pkt, src_endpoint, FERRY_CT_NEW);
	ct.policy_rev = policy_rev;
	ct.rev_nat = rev_nat;
	ct.flags = flags;

	err = bpf_map_update_elem(&ferry_ct_v2, &pkt->tuple, &ct, BPF_NOEXIST);
	if (err && err != -FERRY_EEXIST) /* EEXIST: another CPU created it first, fine */
		return FERRY_DROP(pkt, FERRY_SRC_CT, FERRY_DROP_CT_FULL);
	ferry_count(FERRY_CTR_CT_NEW, pkt->len);
	return FERRY_CT_RES_NEW;
}

/* The reply half of the lookup: the entry keyed by the packet's reversed tuple, its reverse
 * counters and state updated, or NULL. SERVICE entries are not flows: never a hit. */
static __always_inline struct ferry_ct_value *ferry_ct_lookup_reply(struct ferry_pkt *pkt, __u64 now)
{
	struct ferry_ct_value *ct;
	struct ferry_ct_key rev;

	ferry_ct_reverse(&rev, &pkt->tuple);
	ct = bpf_map_lookup_elem(&ferry_ct_v2, &rev);
	if (!ct || (ct->flags & FERRY_CT_F_SERVICE))
		return NULL;
	ct->last_seen_ns = now;
	__sync_fetch_and_add(&ct->packets_rev, 1);
	__sync_fetch_and_add(&ct->bytes_rev, pkt->len);
	ferry_ct_update_state(ct, pkt, 1);
	if ((ct->tcp_flags_rev | pkt->tcp_flags) != ct->tcp_flags_rev)
		ct->tcp_flags_rev |= pkt->tcp_flags;
	ferry_count(FERRY_CTR_CT_REPLY, pkt->len);
	return ct;
}

/* Looks the packet's flow up (forward, then reverse) and updates a hit's counters and state;
 * *entry points at the hit (NULL otherwise). Returns an enum ferry_ct_result: NEW means no
 * entry exists, and nothing is created here (the hook judges the flow first, then calls
 * ferry_ct_create). The entry's key is pkt->tuple for ESTABLISHED, its reverse for REPLY. */
static __always_inline int ferry_ct_lookup(struct ferry_pkt *pkt, struct ferry_ct_value **entry)
{
	struct ferry_ct_value *ct;
	__u64 now;

	*entry = NULL;
	if (pkt->untracked) {
		ferry_count(FERRY_CTR_CT_RELATED, pkt->len);
		return FERRY_CT_RES_RELATED;
	}
	now = bpf_ktime_get_ns();

	ct = bpf_map_lookup_elem(&ferry_ct_v2, &pkt->tuple);
	if (ct && !(ct->flags & FERRY_CT_F_SERVICE)) {
		ct->last_seen_ns = now;
		__sync_fetch_and_add(&ct->packets_fwd, 1);
		__sync_fetch_and_add(&ct->bytes_fwd, pkt->len);
		ferry_ct_update_state(ct, pkt, 0);
		if ((ct->tcp_flags_fwd | pkt->tcp_flags) != ct->tcp_flags_fwd)
			ct->tcp_flags_fwd |= pkt->tcp_flags;
		ferry_count(FERRY_CTR_CT_ESTABLISHED, pkt->len);
		*entry = ct;
		return FERRY_CT_RES_ESTABLISHED;
	}

	ct = ferry_ct_lookup_reply(pkt, now);
	if (ct) {
		*entry = ct;
		return FERRY_CT_RES_REPLY;
	}
	return FERRY_CT_RES_NEW;
}

/* Forgets the flow of this packet (policy revoked it): its next packet is a new flow again. */
static __always_inline void ferry_ct_delete(const struct ferry_pkt *pkt, int ct_result)
{
	struct ferry_ct_key rev;

	if (ct_result == FERRY_CT_RES_REPLY) {
		ferry_ct_reverse(&rev, &pkt->tuple);
		bpf_map_delete_elem(&ferry_ct_v2, &rev);
	} else {
		bpf_map_delete_elem(&ferry_ct_v2, &pkt->tuple);
	}
}

#endif /* FERRY_BPF_LIB_CONNTRACK_H */
