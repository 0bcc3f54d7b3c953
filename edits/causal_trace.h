// Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT", and its
// experiments/causal_trace.py): corrupt the subject, restore one piece of the clean computation,
// and measure how much of the answer's probability comes back.
//
// The one definition graft uses, the reference's: every traced forward is a batch of the clean
// prompt (row 0) and `samples` corrupted copies (rows 1..), each with Gaussian noise of standard
// deviation `noise` x sigma added to the subject tokens' embeddings; sigma is the standard deviation
// of the token embeddings. The reference measures sigma over the subject tokens of 1000 known facts;
// graft takes the whole embedding table as the model sees it (embedding scale included), the
// prompt-independent stand-in, so that one noise level means the same on every prompt. The same
// noise (drawn once, on the CPU, from `seed`) serves every restoration, as the reference reseeds
// its generator for every traced run. A restored hook point takes the clean row's value there.
//
// crown-scan, the editors' choice of fact token and the patching tools all trace through here.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "core/hooks.h"

namespace graft {
class Model;
}

namespace graft::edits {

struct TraceOptions {
  int64_t samples = 10;  // corrupted copies per traced forward (reference: 10)
  double noise = 3.0;    // noise std as a multiple of sigma (reference: 3)
  uint64_t seed = 1;     // seeds the noise
};

// sigma: the standard deviation of the token embedding table as the first layer sees it (before
// any position embedding), accumulated in float64 in row chunks so that a 262k-row table is never
// copied whole.
double embedding_std(const Model& model);

// log p of every next token at the last position of each row of `ids` [B, S]: [B, V] float64 on the
// model's device. In float64 from the logits: a model that knows its facts gives p = 1 - 1e-9, which float32
// probabilities round to 1, and a drop from there is still a drop worth ranking.
at::Tensor last_position_log_probs(const Model& model, const at::Tensor& ids, const Hooks* hooks = nullptr);

class CausalTrace {
 public:
  // `ids`: the prompt (BOS included); the subject spans tokens [subject_first, subject_last].
  CausalTrace(const Model& model, std::vector<int64_t> ids, int64_t subject_first, int64_t subject_last,
              const TraceOptions& options);

  // Mean p(token) at the last position over the corrupted rows, with every hook point in `restored`
  // taking the clean row's value at `position` (none: the corrupted run itself).
  double restored_probability(int64_t token, const std::vector<HookName>& restored, int64_t position) const;
  double corrupted_probability(int64_t token) const { return restored_probability(token, {}, 0); }

  double sigma() const { return sigma_; }
  double noise_std() const { return options_.noise * sigma_; }
  int64_t forwards() const { return forwards_; }  // traced forward passes so far

 private:
  const Model& model_;
  TraceOptions options_;
  int64_t subject_first_ = 0;
  double sigma_ = 0;
  at::Tensor noise_;  // [samples, subject tokens, hidden] on the model's device
  at::Tensor batch_;  // [1 + samples, length]: the prompt in every row
  mutable int64_t forwards_ = 0;
};

}  // namespace graft::edits
