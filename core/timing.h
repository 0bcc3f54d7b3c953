// Wall-clock timing for the phase reports of editors, evaluation and crown-scan.
#pragma once

#include <chrono>

namespace graft {

// Seconds from `start` until now, on the monotonic clock.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace graft
