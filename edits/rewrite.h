// What ROME and MEMIT share: the context templates, keys read at the subject's last token, and the
// optimisation of a vector added at one hook point so that the model says the new target.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/hooks.h"
#include "edits/patch.h"
#include "edits/request.h"
#include "edits/weight_update.h"  // TemporaryUpdates, which the editors use

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

// Which subject tokens an edit reads keys at and writes values to, counted from the subject's end
// (0: its last token). Counting from the end keeps a choice meaningful across contexts: a subject
// at the start of a text and after a prefix can tokenise differently at its first token, rarely at
// its tail.
struct FactTokens {
  std::vector<int64_t> from_end{0};
  // The positions in a prompt whose subject spans [first, last], one per offset; offsets past the
  // subject's start are clamped to it (so a position can repeat).
  std::vector<int64_t> in(int64_t first, int64_t last) const;
  size_t size() const { return from_end.size(); }
};

// How an editor picks its fact tokens: the subject's last token (ROME's published "subject_last"),
// the one token causal tracing finds carries the fact, or every token of the subject. Small models
// trained on names spread a fact over the subject's tokens (each sub-word votes for the answer), and
// one rank-1 edit at the last token cannot outvote the others; `subject` writes one value per token
// (a rank-P update, P the subject's length in tokens).
enum class FactTokenChoice { Last, Traced, Subject };
FactTokenChoice parse_fact_token(const std::string& name);  // "last" / "traced" / "subject"; InputError otherwise
const char* fact_token_name(FactTokenChoice choice);

// The `count` subject tokens whose clean hidden state after `layer` best restores the model's own
// answer when the subject's embeddings are corrupted (Gaussian noise, 3 x the embedding std, 10
// samples): causal tracing per token, on the bare prompt, among the last `within_last` tokens.
FactTokens traced_fact_token(const Model& model, const EditRequest& request, int layer, uint64_t seed, int64_t count = 1,
                             int64_t within_last = std::numeric_limits<int64_t>::max());

// The fact tokens of `choice` for one request, among the subject tokens every context (and the KL
// prompt) shares, counted from the end: Subject takes them all, Traced the `traced_tokens` best.
FactTokens choose_fact_tokens(const Model& model, const EditRequest& request, FactTokenChoice choice,
                              const std::vector<std::string>& contexts, int layer, uint64_t seed, int64_t traced_tokens = 1);

// A fact slot is one (request, fact token) pair: one key, one value, one constraint of the update.
// Slots are ordered by request, then by the request's fact tokens. Empty `tokens`: the last token.
std::vector<int64_t> slot_requests(size_t requests, const std::vector<FactTokens>& tokens);

// The vector each slot is given: requests about the same subject share one per fact token (the
// same subject string and offset from its end), so an edit can teach a subject several new facts
// at once. Values are numbered in order of first appearance. Empty `tokens`: the last token.
std::vector<int64_t> shared_value_slots(const std::vector<EditRequest>& requests, const std::vector<FactTokens>& tokens);

// Activations at every fact slot of `context.format(request.prompt)` for every request and context:
// one tensor per point, [slots, contexts, width].
std::vector<at::Tensor> subject_activations(const Model& model, const std::vector<EditRequest>& requests,
                                            const std::vector<std::string>& contexts, const std::vector<HookName>& points,
                                            const std::vector<FactTokens>& tokens = {});

struct ValueOptions {
  HookName point{HookPoint::MlpDown, 0};  // where the vectors are added (at the fact tokens)
  int64_t steps = 20;              // at most steps - 1 Adam updates, as the reference code
  double learning_rate = 0.5;
  double weight_decay = 0.5;       // times |delta| / |initial|^2 (not squared: as coded)
  double kl_factor = 0.0625;       // KL(P_now || P_before) on "{subject} is a" at the subject
  double clamp_norm_factor = 4.0;  // |delta| <= factor * |initial|
  double stop_loss = 5e-2;
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
  at::Tensor initial;  // [slots, H] the activation at each fact slot of the bare prompt, before any change
  at::Tensor delta;    // [slots, H] the optimised change (slots of one shared value hold the same row)
  int64_t values = 0;  // distinct vectors optimised (shared_value_slots)
  std::vector<double> loss;        // final loss per request
  std::vector<double> target_prob; // mean probability of the new target's tokens at the end
  std::vector<int64_t> steps;      // optimiser steps taken per request
  at::Tensor target() const { return initial + delta; }
};

// Optimises one vector per fact slot, all requests in one batch (their losses are independent,
// except that requests about the same subject share their vectors: shared_value_slots).
// The rewriting prompts are every context with the request's prompt, followed by the new target
// (teacher forcing); the loss is the target's negative log-likelihood on the model's own logits
// (soft-caps included), plus the KL and weight-decay terms.
// Weight decay and the norm clamp apply to each slot against its own initial activation; a
// request's decay is the mean over its slots. `tokens`: per request (empty: the last token for all).
OptimizedValues optimize_values(const Model& model, const std::vector<EditRequest>& requests,
                                const std::vector<std::string>& contexts, const ValueOptions& options,
                                const std::vector<FactTokens>& tokens = {});

// tr(W C W^T) for the layer's down projection W and key second moment C: the expected squared MLP
// output over the statistics' tokens, the scale the leakage term is measured against.
double mlp_output_power(const Model& model, int layer, const at::Tensor& second_moment);

// R^T C R in float64 on the CPU, R [I, P] an update's right factor: what ||dW||_C^2 needs of it.
at::Tensor key_spread(const at::Tensor& second_moment, const at::Tensor& right);

// ||dW||_C^2 / tr(W C W^T) for dW = left right^T, as tr((L^T L)(R^T C R)) with `spread` = R^T C R:
// the expected squared change of the MLP output over the statistics' tokens relative to the output
// itself, i.e. how much an edit leaks onto text that is not about its subjects. Reported for every edit.
double expected_leakage(const at::Tensor& left, const at::Tensor& spread, double power);

// Solves (A) x = b in float64 for symmetric positive semi-definite A, adding a ridge when A is
// rank-deficient or badly conditioned. Reports what it did.
struct SolveReport {
  double condition = 0;  // of A as given (max / min eigenvalue; inf when singular)
  double ridge = 0;      // added to the diagonal (0: none needed)
};
at::Tensor solve_symmetric(const at::Tensor& a, const at::Tensor& b, SolveReport* report);

}  // namespace graft::edits
