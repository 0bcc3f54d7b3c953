// Value optimisation, the step ROME and MEMIT share: one vector per fact slot, optimised with Adam
// so that the model, changed by those vectors, says each request's new target (Meng et al. 2022,
// compute_v): teacher-forced negative log-likelihood of the target over every context, a KL term
// that holds "{subject} is a" still, weight decay and a norm clamp; optionally an expected-leakage
// term and the optimisation through the weight update the vectors imply.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/hooks.h"
#include "edits/fact_tokens.h"
#include "edits/request.h"

namespace graft {
class Model;
}

namespace graft::edits {

// Each editor sets its own defaults (RomeOptions(), MemitOptions()); the values written here are
// ROME's published ones.
struct ValueOptions {
  HookName point{HookPoint::MlpDown, 0};  // where the vectors are added (at the fact tokens)
  int64_t steps = 20;                     // at most steps - 1 Adam updates, as the reference code
  double learning_rate = 0.5;
  double weight_decay = 0.5;       // times |delta| / |initial|^2 (not squared: as coded)
  double kl_factor = 0.0625;       // KL(P_now || P_before) on "{subject} is a" at the subject
  double clamp_norm_factor = 4.0;  // |delta| <= factor * |initial|
  double stop_loss = 5e-2;
  // Padded tokens per forward pass: the rows run in chunks of similar length (0: automatic, about
  // 16 MiB per activation). Only the order of float32 sums depends on it, so patches do not record it.
  int64_t chunk_tokens = 0;
  // The bare prompt's share of the target's likelihood, the prefixed contexts sharing the rest;
  // negative: every context counts the same (published). The editors' efficacy and paraphrase
  // prompts carry no random prefix, and where a model is most certain on the bare prompt the
  // equal mean can be met by the prefixed contexts alone.
  double bare_prompt_weight = -1;
  // Expected leakage: leakage_weight * sum_ij M_ij delta_i . delta_j, M [slots, slots] set so that
  // the sum is the update's expected squared change of the MLP output over the statistics' tokens,
  // relative to the output itself (||dW||_C^2 / tr(W C W^T)). Added at the slots: each request's
  // loss gets its own slots' part (M block-diagonal per request, as ROME's). Through the update
  // (below) M may be full and every request's loss counts all of it. Zero weight or no metric: the
  // published loss.
  double leakage_weight = 0;
  at::Tensor leakage_metric;
  // Values optimised through the update they imply (empty: added at `point`'s fact slots, as
  // published). Each entry is one layer's share of the update: dW = share * D^T key_map^T, D the
  // [slots, H] vectors, so at every position of every prompt that layer's MLP output changes by
  // share * (key . key_map) D, key the position's input to the down projection: exactly what the
  // edited model will do (in float32; low-precision weights round W + dW), other slots' and other
  // positions' changes included. The requests' losses are then coupled; each keeps moving while its
  // loss is above the stopping loss (a vector frozen there does not move, but its Adam moments keep
  // following its gradient, and it resumes from them). `point` only names the activation the decay
  // and the clamp measure each vector against.
  struct UpdateShare {
    int layer = 0;
    at::Tensor key_map;  // [I, slots] float: the update's right factor
    double share = 1.0;
  };
  std::vector<UpdateShare> through_update;
};

struct OptimizedValues {
  at::Tensor initial;               // [slots, H] the activation at each fact slot of the bare prompt, before any change
  at::Tensor delta;                 // [slots, H] the optimised change (slots of one shared value hold the same row)
  int64_t values = 0;               // distinct vectors optimised (shared_value_slots)
  std::vector<double> loss;         // final loss per request
  std::vector<double> target_prob;  // mean probability of the new target's tokens at the end
  std::vector<int64_t> steps;       // optimiser steps taken per request
  at::Tensor target() const { return initial + delta; }
};

// The options as provenance (the patch's hyperparameters.value).
nlohmann::json to_json(const ValueOptions& options);

// Optimises one vector per fact slot, all requests in one batch (their losses are independent,
// except that requests about the same subject share their vectors: shared_value_slots, and that
// through the update every request's vectors act on every prompt).
// The rewriting prompts are every context with the request's prompt, followed by the new target
// (teacher forcing); the loss is the target's negative log-likelihood on the model's own logits
// (soft-caps included), plus the KL and weight-decay terms.
// Weight decay and the norm clamp apply to each slot against its own initial activation; a
// request's decay is the mean over its slots. `tokens`: per request (empty: the last token for all).
OptimizedValues optimize_values(const Model& model, const std::vector<EditRequest>& requests,
                                const std::vector<std::string>& contexts, const ValueOptions& options,
                                const std::vector<FactTokens>& tokens = {});

}  // namespace graft::edits
