#include "edits/evaluate.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model.h"
#include "core/timing.h"
#include "edits/batch.h"
#include "edits/text.h"
#include "edits/weight_update.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

// One teacher-forced sequence: the prompt's tokens, then the target's.
struct Sequence {
  std::vector<int64_t> prompt, target;
  int64_t input_length() const {
    return static_cast<int64_t>(prompt.size() + target.size()) - 1;
  }  // the last target token is never input
};

struct SequenceScore {
  double prob = 0;    // exp(-mean NLL of the target tokens)
  bool top1 = false;  // the target's first token is the argmax after the prompt
};

// Rows per forward: the requested count, or as many as keep the batch's logits under the budget (the
// logits are the largest tensor of an evaluation pass: batch x length x vocabulary). On the CPU at
// most 32: measured on the facts models, 32-row batches of similar length ran 4x faster than one
// batch of all 2000 sequences (less padding, activations that stay in cache).
int64_t rows_that_fit(const Model& model, int64_t length, int64_t requested) {
  if (requested > 0) return requested;
  constexpr int64_t kLogitBudgetBytes = int64_t{256} << 20;
  constexpr int64_t kMaxCpuRows = 32;
  const int64_t row_bytes = length * model.spec().vocab_size * static_cast<int64_t>(at::elementSize(model.dtype()));
  const int64_t fit = std::max<int64_t>(1, kLogitBudgetBytes / std::max<int64_t>(1, row_bytes));
  return model.device().is_cpu() ? std::min(fit, kMaxCpuRows) : fit;
}

// Scores sequences[order[begin..end)] in one right-padded forward: padding after a row's last token
// cannot change what a causal model computes before it, and the mask keeps it out of attention.
void score_batch(const Model& model, const std::vector<Sequence>& sequences, const std::vector<size_t>& rows,
                 std::vector<SequenceScore>& scores) {
  std::vector<std::vector<int64_t>> inputs;
  for (size_t s : rows) {
    inputs.push_back(sequences[s].prompt);
    inputs.back().insert(inputs.back().end(), sequences[s].target.begin(), sequences[s].target.end() - 1);
  }
  const PaddedBatch batch = pad_right(model, inputs);
  std::vector<int64_t> label_flat, label_token;  // (row * length + position) predicting each target token
  for (size_t b = 0; b < rows.size(); ++b) {
    const Sequence& seq = sequences[rows[b]];
    for (size_t t = 0; t < seq.target.size(); ++t) {
      label_flat.push_back(static_cast<int64_t>(b) * batch.length() + static_cast<int64_t>(seq.prompt.size() + t) - 1);
      label_token.push_back(seq.target[t]);
    }
  }
  ForwardOptions options;
  options.attention_mask = batch.mask;
  const at::Tensor logits = model.forward(batch.ids, options);
  const at::Tensor picked = logits.reshape({-1, logits.size(-1)})
                                .index_select(0, at::tensor(label_flat, at::kLong).to(logits.device()))
                                .to(at::kFloat);
  const at::Tensor tokens = at::tensor(label_token, at::kLong).to(logits.device());
  const at::Tensor log_probs = picked.log_softmax(-1).gather(1, tokens.unsqueeze(1)).squeeze(1).to(at::kDouble).cpu();
  const at::Tensor hits = picked.argmax(-1).eq(tokens).cpu();
  const double* lp = log_probs.data_ptr<double>();
  const bool* hit = hits.data_ptr<bool>();

  size_t label = 0;
  for (size_t s : rows) {
    const size_t count = sequences[s].target.size();
    double sum = 0;
    for (size_t t = 0; t < count; ++t) sum += lp[label + t];
    scores[s].prob = std::exp(sum / static_cast<double>(count));
    scores[s].top1 = hit[label];
    label += count;
  }
}

// Shortest first, so that a batch pads little.
std::vector<SequenceScore> score_sequences(const Model& model, const std::vector<Sequence>& sequences,
                                           int64_t batch_size, int64_t* forwards) {
  std::vector<size_t> order(sequences.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sequences[a].input_length() < sequences[b].input_length(); });
  std::vector<SequenceScore> scores(sequences.size());
  for (size_t begin = 0; begin < order.size();) {
    size_t end = begin;
    std::vector<size_t> rows;
    // Sorted ascending: the row being added is the longest so far, so the budget is checked with it.
    while (end < order.size() &&
           static_cast<int64_t>(rows.size()) < rows_that_fit(model, sequences[order[end]].input_length(), batch_size))
      rows.push_back(order[end++]);
    score_batch(model, sequences, rows, scores);
    ++*forwards;
    begin = end;
  }
  return scores;
}

// Where each prompt's two sequences sit in the flat list (rival -1: no contest).
struct PromptPlan {
  std::string prompt;
  int64_t wanted = -1, rival = -1;
};
struct RequestPlan {
  PromptPlan rewrite;
  std::vector<PromptPlan> paraphrases, neighbors;
};

class Planner {
 public:
  explicit Planner(const Model& model) : model_(model) {}

  PromptPlan add(const std::string& prompt, const std::string& wanted, const std::string& rival) {
    PromptPlan plan{prompt, push(prompt, wanted), -1};
    if (rival != wanted) plan.rival = push(prompt, rival);
    return plan;
  }
  const std::vector<Sequence>& sequences() const { return sequences_; }

 private:
  int64_t push(const std::string& prompt, const std::string& target) {
    const PromptWithTarget split = split_target(model_, prompt, target);
    sequences_.push_back({split.prompt, split.target});
    return static_cast<int64_t>(sequences_.size()) - 1;
  }
  const Model& model_;
  std::vector<Sequence> sequences_;
};

std::string describe(const EditRequest& request, size_t index) {
  std::string out = "request " + std::to_string(index);
  if (request.case_id) out += " (case_id " + std::to_string(*request.case_id) + ")";
  return out + " \"" + request.filled_prompt() + "\"";
}

PromptScore to_score(const PromptPlan& plan, const std::vector<SequenceScore>& scores) {
  PromptScore out;
  out.prompt = plan.prompt;
  const SequenceScore& wanted = scores[static_cast<size_t>(plan.wanted)];
  out.p_wanted = wanted.prob;
  out.top1 = wanted.top1;
  out.compared = plan.rival >= 0;
  out.p_rival = out.compared ? scores[static_cast<size_t>(plan.rival)].prob : wanted.prob;
  return out;
}

// Averages over one request's prompts, then over requests (the reference summary's order).
MetricSummary summarize(const std::vector<std::vector<const PromptScore*>>& per_request) {
  MetricSummary out;
  int64_t top1_requests = 0;
  for (const auto& prompts : per_request) {
    if (prompts.empty()) continue;
    double success = 0, magnitude = 0, top1 = 0;
    int64_t compared = 0;
    for (const PromptScore* p : prompts) {
      top1 += p->top1;
      if (!p->compared) continue;
      success += p->success();
      magnitude += p->magnitude();
      ++compared;
    }
    out.prompts += static_cast<int64_t>(prompts.size());
    out.top1 += top1 / static_cast<double>(prompts.size());
    ++top1_requests;
    if (compared == 0) continue;
    out.success += success / static_cast<double>(compared);
    out.magnitude += magnitude / static_cast<double>(compared);
    ++out.requests;
  }
  if (out.requests > 0)
    out.success /= static_cast<double>(out.requests), out.magnitude /= static_cast<double>(out.requests);
  if (top1_requests > 0) out.top1 /= static_cast<double>(top1_requests);
  return out;
}

// scipy.stats.hmean over the metrics that were measured; 0 when any of them is 0.
double harmonic_mean(const std::vector<const MetricSummary*>& metrics) {
  double inverse = 0;
  int64_t count = 0;
  for (const MetricSummary* m : metrics) {
    if (m->requests == 0) continue;
    if (m->success <= 0) return 0;
    inverse += 1.0 / m->success;
    ++count;
  }
  return count == 0 ? 0 : static_cast<double>(count) / inverse;
}

void summarize_all(EvaluationResult& result) {
  std::vector<std::vector<const PromptScore*>> rewrite, paraphrase, neighborhood;
  for (const RequestEvaluation& r : result.requests) {
    rewrite.push_back({&r.rewrite});
    paraphrase.emplace_back();
    for (const PromptScore& p : r.paraphrases) paraphrase.back().push_back(&p);
    neighborhood.emplace_back();
    for (const PromptScore& p : r.neighbors) neighborhood.back().push_back(&p);
  }
  result.efficacy = summarize(rewrite);
  result.paraphrase = summarize(paraphrase);
  result.neighborhood = summarize(neighborhood);
  result.score = harmonic_mean({&result.efficacy, &result.paraphrase, &result.neighborhood});
}

}  // namespace

EvaluationResult evaluate(const Model& model, const std::vector<EditRequest>& requests,
                          const EvaluateOptions& options) {
  if (options.batch_size < 0) throw InputError("batch_size: must be 0 (automatic) or positive");
  const auto started = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;

  Planner planner(model);
  std::vector<RequestPlan> plans;
  for (size_t i = 0; i < requests.size(); ++i) {
    const EditRequest& r = requests[i];
    if (!r.target_true)
      throw InputError(describe(r, i) + ": target_true is needed to evaluate (the answer the edit replaces)");
    RequestPlan plan;
    plan.rewrite = planner.add(r.filled_prompt(), r.target_new, *r.target_true);
    for (const std::string& p : r.paraphrase_prompts)
      plan.paraphrases.push_back(planner.add(p, r.target_new, *r.target_true));
    for (const NeighborhoodPrompt& n : r.neighborhood_prompts)
      plan.neighbors.push_back(planner.add(n.prompt, n.target, r.target_new));
    plans.push_back(std::move(plan));
  }

  EvaluationResult result;
  const std::vector<SequenceScore> scores = score_sequences(model, planner.sequences(), options.batch_size,
                                                            &result.forwards);
  result.sequences = static_cast<int64_t>(scores.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const EditRequest& r = requests[i];
    RequestEvaluation row;
    row.case_id = r.case_id;
    row.subject = r.subject;
    row.target_new = r.target_new;
    row.target_true = *r.target_true;
    row.rewrite = to_score(plans[i].rewrite, scores);
    for (const PromptPlan& p : plans[i].paraphrases) row.paraphrases.push_back(to_score(p, scores));
    for (const PromptPlan& p : plans[i].neighbors) row.neighbors.push_back(to_score(p, scores));
    result.requests.push_back(std::move(row));
  }
  summarize_all(result);
  result.seconds = seconds_since(started);
  return result;
}

EvaluationResult evaluate_each(Model& model, const std::vector<EditRequest>& requests,
                               const std::function<std::vector<TensorUpdate>(const EditRequest&)>& edit,
                               const std::function<void(size_t, const EvaluationResult&)>& on_request,
                               const EvaluateOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  EvaluationResult total;
  for (size_t i = 0; i < requests.size(); ++i) {
    EvaluationResult one;
    {
      const std::vector<TensorUpdate> updates = edit(requests[i]);
      TemporaryUpdates applied(model);  // restored before the next request, error or not
      for (const TensorUpdate& update : updates) applied.add(update);
      one = evaluate(model, {requests[i]}, options);
    }
    if (on_request) on_request(i, one);
    total.requests.push_back(std::move(one.requests.front()));
    total.sequences += one.sequences;
    total.forwards += one.forwards;
  }
  summarize_all(total);
  total.seconds = seconds_since(started);
  return total;
}

EvaluationResult evaluate_rome(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                               const RomeOptions& options,
                               const std::function<void(size_t, const EvaluationResult&)>& on_request,
                               const EvaluateOptions& evaluate_options, EditOutcome* editing) {
  EditOutcome phases;
  const auto clock = std::chrono::steady_clock::now();
  const std::vector<std::string> contexts = context_templates(model, options.templates, options.seed);
  phases.seconds_templates = seconds_since(clock);
  auto edit = [&](const EditRequest& request) {
    EditOutcome one = rome(model, request, stats, options, contexts);
    phases.seconds_keys += one.seconds_keys;
    phases.seconds_values += one.seconds_values;
    phases.seconds_solve += one.seconds_solve;
    return one.updates;
  };
  EvaluationResult result = evaluate_each(model, requests, edit, on_request, evaluate_options);
  if (editing) *editing = phases;
  return result;
}

namespace {

nlohmann::json metric_json(const MetricSummary& m) {
  return {{"success", m.success},
          {"magnitude", m.magnitude},
          {"top1", m.top1},
          {"requests", m.requests},
          {"prompts", m.prompts}};
}

nlohmann::json prompt_json(const PromptScore& p) {
  return {{"prompt", p.prompt}, {"p_wanted", p.p_wanted}, {"p_rival", p.p_rival},
          {"top1", p.top1},     {"compared", p.compared}, {"success", p.success()}};
}

nlohmann::json prompts_json(const std::vector<PromptScore>& prompts) {
  nlohmann::json out = nlohmann::json::array();
  for (const PromptScore& p : prompts) out.push_back(prompt_json(p));
  return out;
}

// The rows of the reports: (label, value, scaled for display).
struct Line {
  const char* label;
  double value;
};
std::vector<Line> report_lines(const EvaluationResult& r) {
  return {{"efficacy        ES", r.efficacy.success},     {"efficacy        EM", r.efficacy.magnitude},
          {"efficacy        top-1", r.efficacy.top1},     {"paraphrase      PS", r.paraphrase.success},
          {"paraphrase      PM", r.paraphrase.magnitude}, {"paraphrase      top-1", r.paraphrase.top1},
          {"neighborhood    NS", r.neighborhood.success}, {"neighborhood    NM", r.neighborhood.magnitude},
          {"neighborhood    top-1", r.neighborhood.top1}, {"score           S", r.score}};
}

std::string footer(const EvaluationResult& r) {
  return strprintf(
      "%zu requests (%lld paraphrase, %lld neighbourhood prompts), %lld sequences in %lld forwards, %.2f s\n",
      r.requests.size(), static_cast<long long>(r.paraphrase.prompts), static_cast<long long>(r.neighborhood.prompts),
      static_cast<long long>(r.sequences), static_cast<long long>(r.forwards), r.seconds);
}

}  // namespace

nlohmann::json to_json(const EvaluateOptions& o) { return {{"batch_size", o.batch_size}}; }

nlohmann::json to_json(const EvaluationResult& r, bool per_request) {
  nlohmann::json out = {
      {"summary",
       {{"efficacy", metric_json(r.efficacy)},
        {"paraphrase", metric_json(r.paraphrase)},
        {"neighborhood", metric_json(r.neighborhood)},
        {"score", r.score},
        {"requests", r.requests.size()},
        {"sequences", r.sequences},
        {"forwards", r.forwards},
        {"seconds", r.seconds}}},
  };
  if (!per_request) return out;
  nlohmann::json rows = nlohmann::json::array();
  for (const RequestEvaluation& q : r.requests) {
    nlohmann::json row = {{"subject", q.subject},
                          {"target_new", q.target_new},
                          {"target_true", q.target_true},
                          {"rewrite", prompt_json(q.rewrite)},
                          {"paraphrases", prompts_json(q.paraphrases)},
                          {"neighbors", prompts_json(q.neighbors)}};
    if (q.case_id) row["case_id"] = *q.case_id;
    rows.push_back(row);
  }
  out["requests"] = rows;
  return out;
}

std::string format_evaluation(const EvaluationResult& r) {
  std::string out = strprintf("%-22s %8s\n", "metric", "%");
  for (const Line& line : report_lines(r)) out += strprintf("%-22s %8.2f\n", line.label, 100 * line.value);
  return out + footer(r);
}

std::string format_comparison(const EvaluationResult& before, const EvaluationResult& after) {
  std::string out = strprintf("%-22s %8s %8s %9s\n", "metric (%)", "before", "after", "change");
  const std::vector<Line> a = report_lines(before), b = report_lines(after);
  for (size_t i = 0; i < a.size(); ++i)
    out += strprintf("%-22s %8.2f %8.2f %+9.2f\n", a[i].label, 100 * a[i].value, 100 * b[i].value,
                     100 * (b[i].value - a[i].value));
  return out + "before: " + footer(before) + "after:  " + footer(after);
}

}  // namespace graft::edits
