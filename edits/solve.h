// The linear algebra of the editors: symmetric solves in float64 and the leakage measure
// ||dW||_C^2 / tr(W C W^T) that ROME and MEMIT report and can optimise against.
#pragma once

#include <ATen/ATen.h>

namespace graft {
class Model;
}

namespace graft::edits {

// Solves A x = b in float64 on the CPU for symmetric positive semi-definite A, adding a ridge when A
// is rank-deficient or badly conditioned. Reports what it did. Error on a non-finite solution.
struct SolveReport {
  double condition = 0;  // of A as given (max / min eigenvalue; inf when singular)
  double ridge = 0;      // added to the diagonal (0: none needed)
};
at::Tensor solve_symmetric(const at::Tensor& a, const at::Tensor& b, SolveReport* report);

// solve_symmetric for many right-hand sides arriving one at a time (ROME's C^-1 k for every request
// of an evaluation): the eigenvalue check, the ridge and the LU factorisation once, then a
// triangular solve per call, equal to solve_symmetric's answer.
class SymmetricSolver {
 public:
  explicit SymmetricSolver(const at::Tensor& a);
  at::Tensor solve(const at::Tensor& b) const;  // float64 on the CPU; Error on a non-finite solution
  const SolveReport& report() const { return report_; }

 private:
  at::Tensor lu_, pivots_;
  SolveReport report_;
};

// tr(W C W^T) for the layer's down projection W and key second moment C: the expected squared MLP
// output over the statistics' tokens, the scale the leakage term is measured against.
double mlp_output_power(const Model& model, int layer, const at::Tensor& second_moment);

// R^T C R in float64 on the CPU, R [I, P] an update's right factor: what ||dW||_C^2 needs of it.
at::Tensor key_spread(const at::Tensor& second_moment, const at::Tensor& right);

// ||dW||_C^2 / tr(W C W^T) for dW = left right^T, as tr((L^T L)(R^T C R)) with `spread` = R^T C R:
// the expected squared change of the MLP output over the statistics' tokens relative to the output
// itself, i.e. how much an edit leaks onto text that is not about its subjects. Reported for every edit.
double expected_leakage(const at::Tensor& left, const at::Tensor& spread, double power);

}  // namespace graft::edits
