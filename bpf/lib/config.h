/* bpf/lib/config.h — the node-wide settings the agent writes and every hook reads
 * (ferry_cfg_v3: overlay device, VTEP MAC, FERRY_CFG_F_* switches, policy revision).
 *
 * A one-entry ARRAY: the verifier inlines its lookup into an address computation (no helper
 * call), so reading it once per packet costs a few instructions. The agent owns the content. */
#ifndef FERRY_BPF_LIB_CONFIG_H
#define FERRY_BPF_LIB_CONFIG_H

#include "lib/common.h"

/* One entry (key 0). All zero (not written yet) = overlay off, policy off. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ferry_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ferry_cfg_v3 SEC(".maps");

/* Never NULL in practice (an array always has key 0); callers still check, for the verifier. */
static __always_inline const struct ferry_config *ferry_node_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ferry_cfg_v3, &zero);
}

#endif /* FERRY_BPF_LIB_CONFIG_H */
