// stable_hash64: FNV-1a 64. Kernel object names derive from it; never change its output.
#include "net/net.h"

namespace ferry::net {

uint64_t stable_hash64(std::string_view data) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;  // FNV-1a 64 prime
  }
  return h;
}

}  // namespace ferry::net
