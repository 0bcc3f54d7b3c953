#include "edits/solve.h"

#include <algorithm>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/model.h"
#include "edits/weight_update.h"

namespace graft::edits {

double mlp_output_power(const Model& model, int layer, const at::Tensor& second_moment) {
  const auto& down = model.arch().mlp_down_projection(layer);
  const at::Tensor w = stored_to_logical(model.weight(down.weight).to(at::kFloat).cpu(), down.layout);  // [H, I]
  // H x I^2 products, so float32: a normaliser needs no more.
  const double power = (at::matmul(w, second_moment.to(at::kFloat).cpu()) * w).sum().item<double>();
  if (!(power > 0))
    throw Error("layer " + std::to_string(layer) +
                ": the MLP output's second moment is not positive; cannot scale the leakage term");
  return power;
}

at::Tensor key_spread(const at::Tensor& second_moment, const at::Tensor& right) {
  const at::Tensor r = right.to(at::kDouble).cpu();
  return at::matmul(r.t(), at::matmul(second_moment.to(at::kDouble).cpu(), r));  // [P, P]
}

double expected_leakage(const at::Tensor& left, const at::Tensor& spread, double power) {
  const at::Tensor l = left.to(at::kDouble).cpu();
  return (at::matmul(l.t(), l) * spread).sum().item<double>() / power;
}

at::Tensor solve_symmetric(const at::Tensor& a, const at::Tensor& b, SolveReport* report) {
  at::Tensor a64 = a.to(at::kDouble).cpu();
  a64 = (a64 + a64.t()) / 2;
  const at::Tensor eigenvalues = at::linalg_eigvalsh(a64);
  const double smallest = eigenvalues.min().item<double>(), largest = eigenvalues.max().item<double>();
  SolveReport local;
  local.condition = smallest > 0 ? largest / smallest : std::numeric_limits<double>::infinity();
  // Rank-deficient or ill-conditioned statistics (fewer independent keys than the width, or a
  // near-constant unit): regularise just enough to make the system well posed.
  if (!(local.condition < 1e12)) {
    local.ridge = std::max(0.0, -smallest) + 1e-6 * std::max(largest, 1e-12);
    a64 = a64 + local.ridge * at::eye(a64.size(0), a64.options());
  }
  at::Tensor x = at::linalg_solve(a64, b.to(at::kDouble).cpu());
  if (!at::isfinite(x).all().item<bool>()) throw Error("solve produced non-finite values; refusing the edit");
  if (report) *report = local;
  return x;
}

}  // namespace graft::edits
