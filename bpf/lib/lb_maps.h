/* bpf/lib/lb_maps.h — the service load-balancing maps (abi.h "services"), defined once for every
 * object that uses them: ferry_lxc (tc hooks: frontend lookup, DNAT, reverse NAT) and ferry_sock
 * (cgroup socket hooks for the node's own processes). Pinned by name, so both objects share one
 * instance of each map under the node's bpffs root. The agent writes them; the datapath only
 * reads, except the affinity and socket reverse-NAT maps, which the datapath fills. */
#ifndef FERRY_BPF_LIB_LB_MAPS_H
#define FERRY_BPF_LIB_LB_MAPS_H

#include "lib/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_SERVICES_MAX);
	__type(key, struct ferry_service_key);
	__type(value, struct ferry_service_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_svc_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_SLOTS_MAX);
	__type(key, struct ferry_slot_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_slot_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct ferry_backend_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_be_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_REVNAT_MAX);
	__type(key, __u32);
	__type(value, struct ferry_revnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_rnat_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FERRY_AFFINITY_MAX);
	__type(key, struct ferry_affinity_key);
	__type(value, struct ferry_affinity_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_aff_v1 SEC(".maps");

/* 4 KiB per table: not preallocated, so it costs memory only with --lb-algorithm maglev. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FERRY_MAGLEV_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ferry_maglev_key);
	__type(value, struct ferry_maglev_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_mglv_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FERRY_SOCK_REVNAT_MAX);
	__type(key, struct ferry_sock_revnat_key);
	__type(value, struct ferry_sock_revnat_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_skrn_v1 SEC(".maps");

#endif /* FERRY_BPF_LIB_LB_MAPS_H */
