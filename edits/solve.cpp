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

SymmetricSolver::SymmetricSolver(const at::Tensor& a) {
  at::Tensor a64 = a.to(at::kDouble).cpu();
  a64 = (a64 + a64.t()) / 2;
  const at::Tensor eigenvalues = at::linalg_eigvalsh(a64);
  const double smallest = eigenvalues.min().item<double>(), largest = eigenvalues.max().item<double>();
  report_.condition = smallest > 0 ? largest / smallest : std::numeric_limits<double>::infinity();
  // Rank-deficient or ill-conditioned statistics (fewer independent keys than the width, or a
  // near-constant unit): regularise just enough to make the system well posed.
  if (!(report_.condition < 1e12)) {
    report_.ridge = std::max(0.0, -smallest) + 1e-6 * std::max(largest, 1e-12);
    a64 = a64 + report_.ridge * at::eye(a64.size(0), a64.options());
  }
  std::tie(lu_, pivots_) = at::linalg_lu_factor(a64);
}

at::Tensor SymmetricSolver::solve(const at::Tensor& b) const {
  const at::Tensor rhs = b.to(at::kDouble).cpu();
  at::Tensor x = at::linalg_lu_solve(lu_, pivots_, rhs.dim() == 1 ? rhs.unsqueeze(1) : rhs);  // matrices only
  if (rhs.dim() == 1) x = x.squeeze(1);
  if (!at::isfinite(x).all().item<bool>()) throw Error("solve produced non-finite values; refusing the edit");
  return x;
}

at::Tensor solve_symmetric(const at::Tensor& a, const at::Tensor& b, SolveReport* report) {
  const SymmetricSolver solver(a);
  if (report) *report = solver.report();
  return solver.solve(b);
}

}  // namespace graft::edits
