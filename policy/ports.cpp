// port_range_prefixes: a port range as the fewest aligned power-of-two blocks.
#include "policy/policy.h"

namespace ferry::policy {

std::vector<PortPrefix> port_range_prefixes(uint16_t first, uint16_t last) {
  std::vector<PortPrefix> out;
  // 32-bit arithmetic: the block after 65535 must not wrap to 0.
  for (uint32_t cur = first; cur <= last;) {
    int bits = 0;  // block size 2^bits: aligned at cur and ending within the range
    while (bits < 16 && (cur & ((2u << bits) - 1)) == 0 && cur + (2u << bits) - 1 <= last) ++bits;
    out.push_back({static_cast<uint16_t>(cur), 16 - bits});
    cur += 1u << bits;
  }
  return out;
}

}  // namespace ferry::policy
