/* bpf/lib/lb_select.h — frontend lookup and backend choice, shared by the tc hooks (lib/lb.h)
 * and the socket LB (ferry_sock.bpf.c). Only the choice of a NEW connection lives here; keeping
 * it for the flow's later packets is the caller's job (conntrack service entry, the socket).
 *
 * Choice, in order (DESIGN.md "Services"):
 *   1. sessionAffinity ClientIP: the client's entry in ferry_aff_v1 if younger than the
 *      frontend's timeout and its backend still exists and serves (an affinity backend removed
 *      from this frontend but still named by another one is kept: the membership check would
 *      cost a scan of the slots; the agent drops such entries when it removes a backend);
 *   2. FERRY_CFG_F_MAGLEV: the frontend's Maglev table at flow_hash % FERRY_MAGLEV_TABLE_SIZE
 *      (the same 5-tuple always lands on the same backend while the table is unchanged);
 *   3. otherwise a uniformly random slot of the set.
 * The set: FERRY_SVC_F_LOCAL frontends give pods and the node (client_internal) set 1, outside
 * clients set 0; every other frontend has only set 0. */
#ifndef FERRY_BPF_LIB_LB_SELECT_H
#define FERRY_BPF_LIB_LB_SELECT_H

#include "lib/common.h"
#include "lib/lb_maps.h"

static __always_inline const struct ferry_service_value *ferry_lb_lookup(__u8 family, const __u8 *addr,
									 __be16 port, __u8 proto)
{
	struct ferry_service_key key;

	__builtin_memset(&key, 0, sizeof(key));
	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	key.port = port;
	key.proto = proto;
	key.family = family;
	return bpf_map_lookup_elem(&ferry_svc_v1, &key);
}

static __always_inline __u8 ferry_lb_set(const struct ferry_service_value *svc, int client_internal)
{
	return (svc->flags & FERRY_SVC_F_LOCAL) && client_internal ? 1 : 0;
}

static __always_inline __u16 ferry_lb_count(const struct ferry_service_value *svc, __u8 set)
{
	return set ? svc->count_internal : svc->count;
}

/* A mix of the flow's addresses and ports (murmur3 finalizer per word): the Maglev index. */
static __always_inline __u32 ferry_lb_hash(const __u8 *saddr, const __u8 *daddr, __be16 sport, __be16 dport,
					   __u8 proto)
{
	__u32 h = 0x9747b28c ^ proto, w;
	int i;

#pragma unroll
	for (i = 0; i < 16; i += 4) {
		__builtin_memcpy(&w, saddr + i, 4);
		h ^= w;
		h = (h ^ (h >> 16)) * 0x85ebca6b;
		__builtin_memcpy(&w, daddr + i, 4);
		h ^= w;
		h = (h ^ (h >> 13)) * 0xc2b2ae35;
	}
	h ^= ((__u32)sport << 16) | dport;
	h = (h ^ (h >> 16)) * 0x85ebca6b;
	return h ^ (h >> 16);
}

static __always_inline const struct ferry_backend_value *ferry_lb_backend(__u32 backend_id)
{
	return backend_id ? bpf_map_lookup_elem(&ferry_be_v1, &backend_id) : NULL;
}

/* Chooses the backend of a new connection from `set` of `svc` (see the top of this file).
 * Returns its id and sets *backend, or returns 0 when the set is empty or the chosen slot
 * vanished under a concurrent agent update (the caller treats that as "no backend"). Writes
 * the client's affinity entry when the frontend has affinity. */
static __always_inline __u32 ferry_lb_select(const struct ferry_service_value *svc, __u8 set, __u8 family,
					     const __u8 *client, __u32 flow_hash, int maglev,
					     const struct ferry_backend_value **backend)
{
	struct ferry_affinity_key akey;
	struct ferry_affinity_value aval, *aff = NULL;
	struct ferry_slot_key skey;
	__u16 count = ferry_lb_count(svc, set);
	__u64 now = 0;
	__u32 id = 0, *slot;

	*backend = NULL;
	if (!count)
		return 0;

	if (svc->flags & FERRY_SVC_F_AFFINITY) {
		__builtin_memset(&akey, 0, sizeof(akey));
		akey.service_id = svc->service_id;
		akey.family = family;
		__builtin_memcpy(akey.client, client, sizeof(akey.client));
		now = bpf_ktime_get_ns();
		aff = bpf_map_lookup_elem(&ferry_aff_v1, &akey);
		if (aff && now - aff->last_used_ns <= (__u64)svc->affinity_timeout_s * 1000000000ULL) {
			*backend = ferry_lb_backend(aff->backend_id);
			if (*backend && (*backend)->state != FERRY_BACKEND_NOT_SERVING) {
				aff->last_used_ns = now;
				ferry_count(FERRY_CTR_LB_AFFINITY_HIT, 0);
				return aff->backend_id;
			}
		}
	}

	if (maglev) {
		struct ferry_maglev_key mkey = { .service_id = svc->service_id, .set = set };
		struct ferry_maglev_value *table = bpf_map_lookup_elem(&ferry_mglv_v1, &mkey);

		if (table) {
			__u32 idx = flow_hash % FERRY_MAGLEV_TABLE_SIZE;

			/* clang drops the bound check as redundant; the verifier (which does not
			 * bound a modulo) needs it: hide the value from the optimizer. */
			asm volatile("" : "+r"(idx));
			if (idx < FERRY_MAGLEV_TABLE_SIZE)
				id = table->backend_id[idx];
		}
	}
	if (!id) {
		__builtin_memset(&skey, 0, sizeof(skey));
		skey.service_id = svc->service_id;
		skey.set = set;
		skey.slot = bpf_get_prandom_u32() % count;
		slot = bpf_map_lookup_elem(&ferry_slot_v1, &skey);
		if (slot)
			id = *slot;
	}
	*backend = ferry_lb_backend(id);
	if (!*backend)
		return 0;

	if (svc->flags & FERRY_SVC_F_AFFINITY) {
		aval.last_used_ns = now;
		aval.backend_id = id;
		aval.pad = 0;
		bpf_map_update_elem(&ferry_aff_v1, &akey, &aval, BPF_ANY);
	}
	return id;
}

#endif /* FERRY_BPF_LIB_LB_SELECT_H */
