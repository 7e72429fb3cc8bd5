#include "common/clock.h"

namespace ckpt {

Clock* RealClock::Get() {
  static Clock* const clock = [] {
    static RealClock instance;
    return &instance;
  }();
  return clock;
}

}  // namespace ckpt
