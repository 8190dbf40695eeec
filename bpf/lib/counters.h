/* bpf/lib/counters.h — per-CPU counters (ferry_ctr_v1) and drop events (ferry_ev_v1), and
 * ferry_finish(): the one place where a negative drop code becomes a counter, an event and
 * TC_ACT_SHOT. */
#ifndef FERRY_BPF_LIB_COUNTERS_H
#define FERRY_BPF_LIB_COUNTERS_H

#include "lib/common.h"

/* Indexed by enum ferry_counter; per CPU so the hot path never shares a cache line. User space
 * sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FERRY_CTR_MAX);
	__type(key, __u32);
	__type(value, struct ferry_counter_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_ctr_v1 SEC(".maps");

/* struct ferry_drop_event records. A full ring loses the event, never the count. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FERRY_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_ev_v1 SEC(".maps");

static __always_inline void ferry_count(__u32 counter, __u32 bytes)
{
	struct ferry_counter_value *value = bpf_map_lookup_elem(&ferry_ctr_v1, &counter);

	if (value) {
		value->packets += 1;
		value->bytes += bytes;
	}
}

static __always_inline void ferry_emit_drop(const struct ferry_pkt *pkt, __u32 reason)
{
	struct ferry_drop_event *ev = bpf_ringbuf_reserve(&ferry_ev_v1, sizeof(*ev), 0);

	if (!ev) {
		ferry_count(FERRY_CTR_EVENT_LOST, pkt->len);
		return;
	}
	ev->ts_ns = bpf_ktime_get_ns();
	ev->type = FERRY_EVENT_DROP;
	ev->reason = reason;
	ev->ifindex = pkt->ifindex;
	ev->endpoint_id = pkt->endpoint_id;
	ev->source_line = pkt->drop_line;
	ev->source_file = pkt->drop_file;
	ev->hook = pkt->hook;
	ev->family = pkt->tuple.family;
	ev->proto = pkt->tuple.proto;
	ev->sport = pkt->tuple.sport;
	ev->dport = pkt->tuple.dport;
	ev->direction = pkt->direction;
	ev->pad = 0;
	__builtin_memcpy(ev->saddr, pkt->tuple.saddr, sizeof(ev->saddr));
	__builtin_memcpy(ev->daddr, pkt->tuple.daddr, sizeof(ev->daddr));
	ev->pkt_len = pkt->len;
	bpf_ringbuf_submit(ev, 0);
}

/* The verdict of a hook: a TC_ACT_* value passes through; a negative drop code is counted
 * (FERRY_CTR_DROP_BASE + reason), reported as an event and turned into TC_ACT_SHOT. */
static __always_inline int ferry_finish(const struct ferry_pkt *pkt, int ret)
{
	__u32 reason;

	if (ret >= 0)
		return ret;
	reason = -ret;
	if (reason > FERRY_DROP_REASON_MAX)
		reason = FERRY_DROP_INVALID; /* cannot happen: every FERRY_DROP uses the enum */
	ferry_count(FERRY_CTR_DROP_BASE + reason, pkt->len);
	ferry_emit_drop(pkt, reason);
	return TC_ACT_SHOT;
}

#endif /* FERRY_BPF_LIB_COUNTERS_H */
