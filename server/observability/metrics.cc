#include "server/observability/metrics.h"

namespace ckpt::server {

Metrics* NoMetrics() {
  static Metrics none;
  return &none;
}

}  // namespace ckpt::server
