// A progress bar on stderr for work that takes more than a second; silent when stderr is not a
// terminal (pipes, CI logs).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace graft::cli {

class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();
  void set_total(int64_t total) { total_ = total; }
  void update(int64_t done);
  void finish();

 private:
  void draw(int64_t done);
  std::string label_, unit_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace graft::cli
