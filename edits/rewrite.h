// What ROME and MEMIT share: the context templates, keys read at the subject's last token, and the
// optimisation of a vector added at one hook point so that the model says the new target.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/hooks.h"
#include "edits/patch.h"
#include "edits/request.h"

namespace graft {
class Model;
}

namespace graft::edits {

// "{}" plus sampled prefixes "<text>. {}" (top-5 sampling from BOS, seeded), as the reference code
// builds them. ROME: 10 of 5 tokens and 10 of 10 tokens; MEMIT: 5 of 10 tokens.
struct TemplateSpec {
  int64_t tokens;
  int64_t count;
};
std::vector<std::string> context_templates(const Model& model, const std::vector<TemplateSpec>& specs, uint64_t seed);

// Which subject token an edit reads its key at and writes its value to: the last one (ROME's
// "subject_last", the default), or the k-th token of the subject (clamped to its last).
struct FactToken {
  int64_t offset = -1;  // -1: the subject's last token
  int64_t in(int64_t first, int64_t last) const { return offset < 0 ? last : std::min(first + offset, last); }
};

// The subject token whose clean hidden state after `layer` best restores the model's own answer
// when the subject's embeddings are corrupted (Gaussian noise, 3 x the embedding std, 10 samples):
// causal tracing per token, on the bare prompt. Returns its offset within the subject.
FactToken traced_fact_token(const Model& model, const EditRequest& request, int layer, uint64_t seed);

// Activations at the fact token of `context.format(request.prompt)` for every request and context:
// one tensor per point, [requests, contexts, width].
std::vector<at::Tensor> subject_activations(const Model& model, const std::vector<EditRequest>& requests,
                                            const std::vector<std::string>& contexts, const std::vector<HookName>& points,
                                            const std::vector<FactToken>& tokens = {});

struct ValueOptions {
  HookName point{HookPoint::MlpDown, 0};  // where the vector is added (at the subject's last token)
  int64_t steps = 20;              // at most steps - 1 Adam updates, as the reference code
  double learning_rate = 0.5;
  double weight_decay = 0.5;       // times |delta| / |initial|^2 (not squared: as coded)
  double kl_factor = 0.0625;       // KL(P_now || P_before) on "{subject} is a" at the subject
  double clamp_norm_factor = 4.0;  // |delta| <= factor * |initial|
  double stop_loss = 5e-2;
};

struct OptimizedValues {
  at::Tensor initial;  // [N, H] the activation at the point for the bare prompt, before any change
  at::Tensor delta;    // [N, H] the optimised change
  std::vector<double> loss;        // final loss per request
  std::vector<double> target_prob; // mean probability of the new target's tokens at the end
  std::vector<int64_t> steps;      // optimiser steps taken per request
  at::Tensor target() const { return initial + delta; }
};

// Optimises one vector per request, all requests in one batch (their losses are independent).
// The rewriting prompts are every context with the request's prompt, followed by the new target
// (teacher forcing); the loss is the target's negative log-likelihood on the model's own logits
// (soft-caps included), plus the KL and weight-decay terms.
// `tokens`: the fact token per request (empty: the subject's last token for all).
OptimizedValues optimize_values(const Model& model, const std::vector<EditRequest>& requests,
                                const std::vector<std::string>& contexts, const ValueOptions& options,
                                const std::vector<FactToken>& tokens = {});

// Updates applied to a model's weights for the duration of an edit (so later steps see earlier
// ones), undone exactly when it goes out of scope, error or not: the first time a tensor is
// touched its bytes are copied, and the copies are written back at the end.
class TemporaryUpdates {
 public:
  explicit TemporaryUpdates(Model& model) : model_(model) {}
  ~TemporaryUpdates();
  TemporaryUpdates(const TemporaryUpdates&) = delete;
  TemporaryUpdates& operator=(const TemporaryUpdates&) = delete;
  // Adds dW = left @ right^T (logical [out, in]) to the tensor, in the layout the checkpoint stores.
  void add(const TensorUpdate& update);

 private:
  Model& model_;
  std::map<std::string, at::Tensor> originals_;
};

// Solves (A) x = b in float64 for symmetric positive semi-definite A, adding a ridge when A is
// rank-deficient or badly conditioned. Reports what it did.
struct SolveReport {
  double condition = 0;  // of A as given (max / min eigenvalue; inf when singular)
  double ridge = 0;      // added to the diagonal (0: none needed)
};
at::Tensor solve_symmetric(const at::Tensor& a, const at::Tensor& b, SolveReport* report);

}  // namespace graft::edits
