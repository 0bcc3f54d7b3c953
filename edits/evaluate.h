// CounterFact-style evaluation of a model on edit requests, as the reference code scores it
// (kmeng01/memit experiments/py/eval_utils_counterfact.py and experiments/summarize.py):
//
//   p(target | prompt) = exp(-mean NLL of the target's tokens), teacher forced, prompt and target
//   tokenised together.
//   efficacy      [p(target_new) > p(target_true)] on the request's prompt
//   paraphrase    the same, as a fraction over the paraphrase prompts
//   neighborhood  [p(own target) > p(target_new)] as a fraction over the neighbourhood prompts
//   magnitudes    the mean differences of those probabilities (EM, PM, NM)
//   top-1         whether the first token of the wanted target is the model's top next token
//   score         harmonic mean of the three success rates
//
// Per-request values are averaged over the request's prompts first, then over requests, as the
// reference summary does. Everything is a fraction in [0, 1]; the reports print percentages.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "edits/patch.h"
#include "edits/request.h"
#include "edits/rome.h"
#include "edits/stats.h"

namespace graft {
class Model;
}

namespace graft::edits {

struct EvaluateOptions {
  // Sequences per forward pass; 0: as many as keep one batch's logits under about 256 MiB (at most
  // 32 on the CPU, where smaller batches of similar length run faster).
  int64_t batch_size = 0;
};

nlohmann::json to_json(const EvaluateOptions& options);

// One prompt scored for two answers: the one the metric wants to win (target_new on the request's
// own and paraphrase prompts, the neighbour's own target on neighbourhood prompts) and its rival.
struct PromptScore {
  std::string prompt;
  double p_wanted = 0;  // mean per-token probability of the wanted answer
  double p_rival = 0;
  bool top1 = false;     // the wanted answer's first token is the model's top-1 next token
  bool compared = true;  // false when both answers are the same text (no contest; left out of the rates)
  bool success() const { return compared && p_wanted > p_rival; }
  double magnitude() const { return p_wanted - p_rival; }
};

struct RequestEvaluation {
  std::optional<int64_t> case_id;
  std::string subject, target_new, target_true;
  PromptScore rewrite;                   // wanted target_new, rival target_true
  std::vector<PromptScore> paraphrases;  // wanted target_new, rival target_true
  std::vector<PromptScore> neighbors;    // wanted the neighbour's target, rival target_new
};

// A metric's means over requests (requests without such prompts are left out; `requests` counts
// those that were in).
struct MetricSummary {
  double success = 0;    // ES / PS / NS
  double magnitude = 0;  // EM / PM / NM
  double top1 = 0;       // first-token accuracy of the wanted answer
  int64_t requests = 0;
  int64_t prompts = 0;
};

struct EvaluationResult {
  std::vector<RequestEvaluation> requests;
  MetricSummary efficacy, paraphrase, neighborhood;
  double score = 0;       // harmonic mean of efficacy, paraphrase and neighborhood success (S)
  int64_t sequences = 0;  // teacher-forced sequences scored
  int64_t forwards = 0;
  double seconds = 0;
};

// Scores the model as it is. Every request needs target_true; InputError naming the request
// otherwise.
EvaluationResult evaluate(const Model& model, const std::vector<EditRequest>& requests,
                          const EvaluateOptions& options = {});

// ROME's published protocol, "one edit at a time": each request is edited alone on the unedited
// model (`edit` returns the weight updates), scored, and the weights are restored exactly before the
// next. `on_request(index, result)` reports progress. The result holds every request's scores.
EvaluationResult evaluate_each(Model& model, const std::vector<EditRequest>& requests,
                               const std::function<std::vector<TensorUpdate>(const EditRequest&)>& edit,
                               const std::function<void(size_t, const EvaluationResult&)>& on_request = {},
                               const EvaluateOptions& options = {});

// ROME's published protocol: each request edited alone on the unedited model, scored, the weights
// restored exactly. The context templates are sampled once for all requests (rome(..., contexts)).
// `editing` (optional) gets the editor's phase times, summed over the requests.
EvaluationResult evaluate_rome(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                               const RomeOptions& options,
                               const std::function<void(size_t, const EvaluationResult&)>& on_request,
                               const EvaluateOptions& evaluate_options, EditOutcome* editing = nullptr);

// { "summary": {...}, "requests": [...] } (per-prompt rows only when `per_request`).
nlohmann::json to_json(const EvaluationResult& result, bool per_request = true);
// The summary table: one row per metric, in percent.
std::string format_evaluation(const EvaluationResult& result);
// Before and after an edit, side by side, with the change.
std::string format_comparison(const EvaluationResult& before, const EvaluationResult& after);

}  // namespace graft::edits
