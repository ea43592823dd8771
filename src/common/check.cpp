#include <cstdio>
#include <cstdlib>

#include "common/result.h"

namespace canopy::detail_check {
void Fail(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "CANOPY_CHECK failed: %s at %s:%d\n", cond, file, line);
  std::abort();
}
}  // namespace canopy::detail_check
