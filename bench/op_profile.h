// Operator times of a stretch of work, from LibTorch's RecordFunction callbacks (the mechanism its
// profiler is built on, without Kineto): each ATen operator and autograd function is timed on the
// thread that runs it, and a nested call's time is taken out of its caller's self time. Used by
// `graft bench --sections editors` for the share of an editor's time spent in matrix products and,
// with --profile, for the per-operator table. One OpProfile at a time per process.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace graft::bench {

struct OpTime {
  std::string name;
  double self_s = 0;   // time in the operator itself, nested operators' time taken out
  double total_s = 0;  // including what it called (a recursive call counts again)
  int64_t calls = 0;
  double flops = 0;  // the matrix products' 2 m n k, when the profile counts them
};

class OpProfile {
 public:
  // Starts timing every operator any thread runs. With `count_matmul_flops`, the matrix products'
  // floating-point operations are counted from their operands' shapes (LibTorch then packs every
  // operator's inputs for the callback, which costs a little on every call).
  explicit OpProfile(bool count_matmul_flops = false);
  ~OpProfile();
  OpProfile(const OpProfile&) = delete;
  OpProfile& operator=(const OpProfile&) = delete;

  void stop();  // stops timing (the figures stay); the destructor stops too
  std::vector<OpTime> by_self_time() const;
  // Self time of the dense matrix products (mm, addmm, bmm, baddbmm, mv, addmv, dot): the
  // arithmetic an editor is made of.
  double matmul_seconds() const;
  double matmul_flops() const;  // 0 unless counted
  // Self time of LibTorch's fused attention kernels (which do their matrix products inside).
  double attention_kernel_seconds() const;
};

// The `top` operators by self time, as JSON rows and as a table.
nlohmann::json op_table_json(const std::vector<OpTime>& ops, size_t top);
std::string op_table_text(const std::vector<OpTime>& ops, size_t top, double wall_seconds);

}  // namespace graft::bench
