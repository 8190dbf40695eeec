// Maglev table population: each backend walks its own permutation of the slots
// (offset + j * skip mod M, M prime so every skip visits every slot) and claims the next free slot
// on its turn. Weighted turns as in Katran's MaglevHashV2: a backend takes a turn each time its
// accumulated weight reaches the largest weight.
#include "agent/services/maglev.h"

#include <algorithm>
#include <stdexcept>
#include <string_view>

#include "net/net.h"

namespace ferry::services {
namespace {

// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

uint64_t keyed_hash(std::string_view salt, const std::string& key) {
  std::string data(salt);
  data += key;
  return mix64(net::stable_hash64(data));
}

struct Walker {
  uint32_t id = 0;
  uint32_t weight = 0;
  uint64_t offset = 0;
  uint64_t skip = 0;
  uint64_t next = 0;        // how far along its permutation this backend is
  uint64_t cum_weight = 0;
};

}  // namespace

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint32_t d = 3; static_cast<uint64_t>(d) * d <= n; d += 2)
    if (n % d == 0) return false;
  return true;
}

std::vector<uint32_t> maglev_table(const std::vector<MaglevBackend>& backends, uint32_t table_size) {
  if (table_size > kMaglevMaxTableSize || !is_prime(table_size))
    throw std::invalid_argument("maglev table size " + std::to_string(table_size) +
                                " must be a prime <= " + std::to_string(kMaglevMaxTableSize));
  std::vector<uint32_t> table(table_size, kMaglevNoBackend);

  // Key order, so that the table does not depend on the order backends were listed in.
  std::vector<const MaglevBackend*> sorted;
  for (const MaglevBackend& b : backends)
    if (b.weight > 0) sorted.push_back(&b);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const MaglevBackend* a, const MaglevBackend* b) { return a->key < b->key; });
  sorted.erase(std::unique(sorted.begin(), sorted.end(),
                           [](const MaglevBackend* a, const MaglevBackend* b) { return a->key == b->key; }),
               sorted.end());
  if (sorted.empty()) return table;
  if (sorted.size() == 1) {
    std::fill(table.begin(), table.end(), sorted.front()->id);
    return table;
  }

  std::vector<Walker> walkers;
  uint32_t max_weight = 0;
  for (const MaglevBackend* b : sorted) {
    Walker w;
    w.id = b->id;
    w.weight = b->weight;
    w.offset = keyed_hash("maglev-offset/", b->key) % table_size;
    w.skip = keyed_hash("maglev-skip/", b->key) % (table_size - 1) + 1;
    walkers.push_back(w);
    max_weight = std::max(max_weight, b->weight);
  }

  uint32_t filled = 0;
  std::vector<bool> taken(table_size, false);
  while (true) {
    for (Walker& w : walkers) {
      w.cum_weight += w.weight;
      if (w.cum_weight < max_weight) continue;
      w.cum_weight -= max_weight;
      uint64_t slot = (w.offset + w.next * w.skip) % table_size;
      while (taken[slot]) {
        ++w.next;
        slot = (w.offset + w.next * w.skip) % table_size;
      }
      taken[slot] = true;
      table[slot] = w.id;
      ++w.next;
      if (++filled == table_size) return table;
    }
  }
}

}  // namespace ferry::services
