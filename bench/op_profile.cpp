#include "bench/op_profile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "core/error.h"

namespace graft::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Totals {
  std::mutex mutex;
  std::map<std::string, OpTime> ops;
};
Totals* g_totals = nullptr;  // the running OpProfile's figures (RecordFunction takes plain function pointers)

// The calls open on one thread, innermost last, each with the time its nested calls took.
struct Open {
  Clock::time_point start;
  double nested_s = 0;
};
thread_local std::vector<Open> t_open;

const std::vector<std::string> kMatmuls = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                                           "aten::mv", "aten::addmv", "aten::dot", "aten::addbmm"};

// 2 m n k of a matrix product, from its operands' shapes (the add- forms take the addend first).
double matmul_flops_of(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  if (std::find(kMatmuls.begin(), kMatmuls.end(), name) == kMatmuls.end()) return 0;
  const auto inputs = fn.inputs();
  const size_t first = name.rfind("aten::add", 0) == 0 || name == "aten::baddbmm" ? 1 : 0;
  if (inputs.size() < first + 2 || !inputs[first].isTensor() || !inputs[first + 1].isTensor()) return 0;
  const at::IntArrayRef a = inputs[first].toTensor().sizes(), b = inputs[first + 1].toTensor().sizes();
  double n = 2;
  for (int64_t d : a) n *= static_cast<double>(d);  // batch x m x k (or m x k, or k)
  if (b.size() >= 2 && b.size() == a.size()) n *= static_cast<double>(b.back());
  return n;
}

bool g_count_flops = false;

// Marks a call whose start this profile saw (a call begun before it started has no context).
struct Started : at::ObserverContext {
  size_t depth = 0;
  double flops = 0;
};

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  auto context = std::make_unique<Started>();
  context->depth = t_open.size();
  if (g_count_flops) context->flops = matmul_flops_of(fn);
  t_open.push_back({Clock::now(), 0.0});
  return context;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* context) {
  auto* started = dynamic_cast<Started*>(context);
  if (started == nullptr || started->depth + 1 != t_open.size() || g_totals == nullptr) return;
  const Open open = t_open.back();
  t_open.pop_back();
  const double total = std::chrono::duration<double>(Clock::now() - open.start).count();
  if (!t_open.empty()) t_open.back().nested_s += total;
  std::lock_guard<std::mutex> lock(g_totals->mutex);
  OpTime& op = g_totals->ops[fn.name()];
  op.self_s += total - open.nested_s;
  op.total_s += total;
  op.flops += started->flops;
  ++op.calls;
}

at::CallbackHandle g_handle = 0;

// The sum of one field of OpTime (self_s, flops) over the named operators.
double sum_of(const std::vector<std::string>& names, double OpTime::*field) {
  if (g_totals == nullptr) return 0;
  std::lock_guard<std::mutex> lock(g_totals->mutex);
  double s = 0;
  for (const auto& name : names)
    if (auto it = g_totals->ops.find(name); it != g_totals->ops.end()) s += it->second.*field;
  return s;
}

}  // namespace

OpProfile::OpProfile(bool count_matmul_flops) {
  if (g_totals != nullptr) throw Error("OpProfile: one profile at a time");
  g_totals = new Totals;
  g_count_flops = count_matmul_flops;
  g_handle = at::addGlobalCallback(at::RecordFunctionCallback(&on_start, &on_end)
                                       .needsInputs(count_matmul_flops)
                                       .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
}

void OpProfile::stop() {
  if (g_handle != 0) at::removeCallback(g_handle);
  g_handle = 0;
}

OpProfile::~OpProfile() {
  stop();
  delete g_totals;
  g_totals = nullptr;
}

std::vector<OpTime> OpProfile::by_self_time() const {
  std::vector<OpTime> out;
  {
    std::lock_guard<std::mutex> lock(g_totals->mutex);
    for (const auto& [name, op] : g_totals->ops) {
      out.push_back(op);
      out.back().name = name;
    }
  }
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.self_s > b.self_s; });
  return out;
}

double OpProfile::matmul_seconds() const { return sum_of(kMatmuls, &OpTime::self_s); }

double OpProfile::matmul_flops() const { return sum_of(kMatmuls, &OpTime::flops); }

double OpProfile::attention_kernel_seconds() const {
  return sum_of({"aten::_scaled_dot_product_flash_attention_for_cpu",
                 "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                 "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_efficient_attention",
                 "aten::_flash_attention_forward", "aten::_flash_attention_backward",
                 "aten::_efficient_attention_forward", "aten::_efficient_attention_backward"},
                &OpTime::self_s);
}

nlohmann::json op_table_json(const std::vector<OpTime>& ops, size_t top) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < std::min(top, ops.size()); ++i)
    rows.push_back(
        {{"op", ops[i].name}, {"self_s", ops[i].self_s}, {"total_s", ops[i].total_s}, {"calls", ops[i].calls}});
  return rows;
}

std::string op_table_text(const std::vector<OpTime>& ops, size_t top, double wall_seconds) {
  std::ostringstream o;
  char line[256];
  std::snprintf(line, sizeof line, "    %-58s %9s %7s %9s %8s\n", "operator", "self s", "share", "total s", "calls");
  o << line;
  for (size_t i = 0; i < std::min(top, ops.size()); ++i) {
    std::snprintf(line, sizeof line, "    %-58.58s %9.3f %6.1f%% %9.3f %8lld\n", ops[i].name.c_str(), ops[i].self_s,
                  100 * ops[i].self_s / wall_seconds, ops[i].total_s, static_cast<long long>(ops[i].calls));
    o << line;
  }
  return o.str();
}

}  // namespace graft::bench
