// agent/services/maglev.h — Maglev consistent hashing (Eisenbud et al., NSDI 2016; the weighted
// fill of Katran's MaglevHashV2): a lookup table of backend ids that a datapath indexes with
// hash(5-tuple) % size. Every backend gets a share of the slots proportional to its weight, and a
// change of the backend set moves only about the changed share of the slots, so most flows keep
// their backend without per-flow state (a NodePort flow that lands on another node after an
// ECMP/LB change still reaches the same backend).
//
// The table depends only on the backends' keys and weights, never on the order they are given
// in nor on their ids: every node builds the same slot -> backend assignment (Cilium sorts by
// name for the same reason). The permutation of each backend comes from two hashes of its key
// (net::stable_hash64, finalised with a 64-bit mixer because FNV-1a alone spreads keys that
// differ in their last characters poorly).
//
// Pure; no I/O. Errors: maglev_table throws std::invalid_argument when table_size is not a prime
// or is larger than kMaglevMaxTableSize.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry::services {

inline constexpr uint32_t kMaglevDefaultTableSize = 16381;   // Cilium's default, a prime
inline constexpr uint32_t kMaglevMaxTableSize = 131071;      // keeps a table under 512 KiB
inline constexpr uint32_t kMaglevNoBackend = 0;              // slots of a table without backends

struct MaglevBackend {
  std::string key;     // stable across nodes and restarts, e.g. backend_key(): "10.1.0.5:8080/TCP"
  uint32_t id = 0;     // what the table holds (a BackendId); never kMaglevNoBackend
  uint32_t weight = 1; // relative share; 0 = never chosen
};

// The lookup table: table_size entries, each a backend id. Backends with equal keys are taken
// once (the first given). No backend with weight > 0: every slot is kMaglevNoBackend. With more
// backends than slots, some backends get no slot.
std::vector<uint32_t> maglev_table(const std::vector<MaglevBackend>& backends,
                                   uint32_t table_size = kMaglevDefaultTableSize);

bool is_prime(uint32_t n);

}  // namespace ferry::services
