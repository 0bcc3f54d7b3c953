#include "edits/crown_scan.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hooks.h"
#include "core/model.h"
#include "core/timing.h"
#include "core/tokenizer/tokenizer.h"
#include "edits/text.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

void check_inputs(const std::string& prompt_template, const std::string& subject,
                  const std::optional<std::string>& expect, const CrownScanOptions& options) {
  const size_t slot = prompt_template.find("{}");
  if (slot == std::string::npos) {
    std::string hint;
    if (!subject.empty() && prompt_template.find(subject) != std::string::npos)
      hint = " (write \"{}\" in place of \"" + subject + "\")";
    else if (!subject.empty()) hint = " (the subject \"" + subject + "\" is not in it either)";
    throw InputError("prompt \"" + prompt_template + "\": needs \"{}\" where the subject goes" + hint);
  }
  if (prompt_template.find("{}", slot + 2) != std::string::npos)
    throw InputError("prompt \"" + prompt_template + "\": holds \"{}\" more than once");
  if (subject.find_first_not_of(" \t\n") == std::string::npos) throw InputError("subject: empty");
  if (expect && expect->find_first_not_of(" \t\n") == std::string::npos) throw InputError("expect: empty");
  if (options.tracing.samples < 1) throw InputError("samples: must be at least 1");
  if (!(options.tracing.noise > 0) || !std::isfinite(options.tracing.noise))
    throw InputError("noise: must be a positive number");
  if (options.window < 0) throw InputError("window: must be at least 1 (or 0: automatic)");
}

// The text `ids[count]` adds after the first `count` tokens: decoding one token alone would lose the
// leading space a Metaspace tokenizer strips at the start of a text.
std::string token_text(const Tokenizer& tokenizer, std::vector<int64_t> ids, size_t count) {
  const std::string before = tokenizer.decode(std::vector<int64_t>(ids.begin(), ids.begin() + static_cast<long>(count)),
                                              false);
  ids.resize(count + 1);
  const std::string after = tokenizer.decode(ids, false);
  return after.rfind(before, 0) == 0 ? after.substr(before.size()) : tokenizer.decode({ids.back()}, false);
}

at::Tensor as_batch(const std::vector<int64_t>& ids, int64_t rows) {
  return at::tensor(ids, at::kLong).unsqueeze(0).expand({rows, -1}).contiguous();
}

// log p(`token`) at the last position of every row of `ids`: [B] on the CPU (float64).
at::Tensor last_token_log_probs(const Model& model, const at::Tensor& ids, const Hooks* hooks, int64_t token,
                                int64_t* forwards) {
  ++*forwards;
  return last_position_log_probs(model, ids, hooks).select(1, token).cpu();
}

// Over the layers that can reach the answer; the lowest layer wins a tie.
int argmax_layer(const std::vector<CrownLayer>& layers, double CrownLayer::*field, bool largest) {
  int best = -1;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!layers[i].reaches_answer) continue;
    const double value = layers[i].*field;
    if (best < 0 ||
        (largest ? value > layers[static_cast<size_t>(best)].*field : value < layers[static_cast<size_t>(best)].*field))
      best = static_cast<int>(i);
  }
  return std::max(best, 0);
}

// Whether what layer i leaves at `position` can reach the last position's prediction: the position
// is the last one, or some later layer computes its own K/V there (a KV-shared layer reads K/V that
// were computed before it, so it never sees what the layers below it wrote at other positions).
bool reaches_answer(const Model& model, int layer, int64_t position, int64_t length) {
  return position == length - 1 || model.arch().later_layer_reads_positions(layer);
}

int64_t window_for(const CrownScanOptions& options, int layers) {
  if (options.window > 0) return options.window;
  return std::max<int64_t>(1, std::min<int64_t>(10, layers / 2));
}

struct Expected {
  int64_t token = 0;
  int64_t token_count = 1;
  std::string text;
};

// The answer to watch: the model's own top-1 when none is given, else the first token of `expect`
// tokenised after the prompt. A leading space is added, as for edit targets, unless the prompt
// already ends in whitespace: "--expect Paris" means the word that follows "is".
Expected resolve_expect(const Model& model, const SubjectSpan& span, const std::string& prompt,
                        const std::optional<std::string>& expect, const at::Tensor& clean_log_probs) {
  Expected out;
  if (!expect) {
    out.token = clean_log_probs.argmax().item<int64_t>();
    return out;
  }
  out.text = *expect;
  const bool prompt_ends_in_space = !prompt.empty() && std::isspace(static_cast<unsigned char>(prompt.back()));
  if (!prompt_ends_in_space && !std::isspace(static_cast<unsigned char>(out.text.front()))) out.text.insert(0, " ");
  const PromptWithTarget split = split_target(model, prompt, out.text);
  if (split.prompt != span.ids)
    throw InputError("expect \"" + *expect + "\": merges with the prompt's last token; give it with its leading space");
  out.token = split.target.front();
  out.token_count = static_cast<int64_t>(split.target.size());
  return out;
}

// The clean run: the model's own answer, the answer to watch and its baseline probability.
Expected clean_run(const Model& model, const SubjectSpan& span, const std::optional<std::string>& expect,
                   CrownScanResult& result) {
  const Tokenizer& tokenizer = model.require_tokenizer();
  const at::Tensor clean_log_probs = last_position_log_probs(model, as_batch(span.ids, 1)).select(0, 0).cpu();
  ++result.forwards;
  const Expected expected = resolve_expect(model, span, result.prompt, expect, clean_log_probs);
  std::vector<int64_t> with_answer = span.ids;
  const int64_t top = clean_log_probs.argmax().item<int64_t>();
  with_answer.push_back(top);
  result.top_token_text = token_text(tokenizer, with_answer, span.ids.size());
  result.top_prob = std::exp(clean_log_probs[top].item<double>());
  with_answer.back() = expected.token;
  result.expect_token = expected.token;
  result.expect_token_text = token_text(tokenizer, with_answer, span.ids.size());
  result.expect_token_count = expected.token_count;
  result.expect_is_model_answer = !expect.has_value();
  result.expect = expect ? expected.text : result.expect_token_text;
  result.baseline_log_prob = clean_log_probs[expected.token].item<double>();
  result.baseline_prob = std::exp(result.baseline_log_prob);
  return expected;
}

// One forward, one row per layer: row i zeroes layer i's MLP output at the subject's last token.
void ablate_layers(const Model& model, const SubjectSpan& span, int64_t token, CrownScanResult& result) {
  const int layers = model.arch().num_layers();
  Hooks hooks(layers);
  for (int i = 0; i < layers; ++i)
    hooks.add(HookName{HookPoint::MlpOut, i},
              [i, last = span.last](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
                at::Tensor out = x.clone();
                out.select(0, i).select(0, last).zero_();
                return out;
              });
  const at::Tensor ablated = last_token_log_probs(model, as_batch(span.ids, layers), &hooks, token, &result.forwards);
  for (int i = 0; i < layers; ++i) {
    CrownLayer row;
    row.layer = i;
    row.mlp_width = model.arch().intermediate_size_for_layer(i);
    row.ablation_log_delta = ablated[i].item<double>() - result.baseline_log_prob;
    row.ablated_prob = std::exp(ablated[i].item<double>());
    row.ablation_delta = row.ablated_prob - result.baseline_prob;
    row.reaches_answer = reaches_answer(model, i, span.last, static_cast<int64_t>(span.ids.size()));
    result.layers.push_back(row);
  }
  result.ablation_layer = argmax_layer(result.layers, &CrownLayer::ablation_log_delta, /*largest=*/false);
}

// Causal tracing: per layer, one forward of the clean row plus `samples` corrupted rows for the
// hidden state, and one for the MLP window.
void trace_layers(const Model& model, const SubjectSpan& span, int64_t token, const CrownScanOptions& options,
                  CrownScanResult& result) {
  const int layers = model.arch().num_layers();
  const CausalTrace tracer(model, span.ids, span.first, span.last, options.tracing);
  result.embedding_std = tracer.sigma();
  result.noise_std = tracer.noise_std();
  auto traced = [&](const std::vector<HookName>& restored) {
    return tracer.restored_probability(token, restored, span.last);
  };

  result.corrupted_prob = traced({});
  result.window = window_for(options, layers);
  const int64_t below = result.window / 2, above = result.window - below;  // the reference's [l - w/2, l + ceil(w/2))
  for (CrownLayer& row : result.layers) {
    row.traced_prob = traced({HookName{HookPoint::ResidPost, row.layer}});
    row.indirect_effect = row.traced_prob - result.corrupted_prob;
    row.window_first = static_cast<int>(std::max<int64_t>(0, row.layer - below));
    row.window_last = static_cast<int>(std::min<int64_t>(layers, row.layer + above)) - 1;
    std::vector<HookName> window;
    for (int j = row.window_first; j <= row.window_last; ++j) window.push_back(HookName{HookPoint::MlpOut, j});
    row.mlp_traced_prob = traced(window);
    row.mlp_indirect_effect = row.mlp_traced_prob - result.corrupted_prob;
  }
  result.forwards += tracer.forwards();
  result.trace_layer = argmax_layer(result.layers, &CrownLayer::indirect_effect, /*largest=*/true);
  result.mlp_trace_layer = argmax_layer(result.layers, &CrownLayer::mlp_indirect_effect, /*largest=*/true);
}

}  // namespace

CrownScanResult crown_scan(const Model& model, const std::string& prompt_template, const std::string& subject,
                           std::optional<std::string> expect, const CrownScanOptions& options) {
  check_inputs(prompt_template, subject, expect, options);
  const auto started = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;

  CrownScanResult result;
  result.prompt_template = prompt_template;
  result.subject = subject;
  result.prompt = fill_template(prompt_template, subject);
  result.options = options;
  const SubjectSpan span = locate_subject(model, prompt_template, subject);
  result.subject_first = span.first;
  result.subject_last = span.last;
  for (size_t i = 0; i < span.ids.size(); ++i)
    result.tokens.push_back(token_text(model.require_tokenizer(), span.ids, i));

  const Expected expected = clean_run(model, span, expect, result);
  ablate_layers(model, span, expected.token, result);
  result.picked_layer = result.ablation_layer;
  result.picked_by = "ablation (largest drop of log p(expect) with the MLP output zeroed at the subject's last token)";
  if (options.trace) {
    trace_layers(model, span, expected.token, options, result);
    result.picked_layer = result.mlp_trace_layer;
    result.picked_by = "causal trace (largest indirect effect of the clean MLP outputs at the subject's last token)";
  }
  result.seconds = seconds_since(started);
  return result;
}

nlohmann::json to_json(const TraceOptions& o) { return {{"samples", o.samples}, {"noise", o.noise}, {"seed", o.seed}}; }

nlohmann::json to_json(const CrownScanOptions& o) {
  nlohmann::json out = to_json(o.tracing);
  out["window"] = o.window;
  out["trace"] = o.trace;
  return out;
}

nlohmann::json to_json(const CrownScanResult& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (const CrownLayer& l : r.layers) {
    nlohmann::json row = {{"layer", l.layer},
                          {"mlp_width", l.mlp_width},
                          {"ablated_prob", l.ablated_prob},
                          {"ablation_delta", l.ablation_delta},
                          {"ablation_log_delta", l.ablation_log_delta},
                          {"reaches_answer", l.reaches_answer}};
    if (r.options.trace) {
      row["traced_prob"] = l.traced_prob;
      row["indirect_effect"] = l.indirect_effect;
      row["mlp_traced_prob"] = l.mlp_traced_prob;
      row["mlp_indirect_effect"] = l.mlp_indirect_effect;
      row["mlp_window"] = {l.window_first, l.window_last};
    }
    layers.push_back(row);
  }
  nlohmann::json out = {
      {"prompt_template", r.prompt_template},
      {"subject", r.subject},
      {"prompt", r.prompt},
      {"tokens", r.tokens},
      {"subject_tokens", {r.subject_first, r.subject_last}},
      {"expect", r.expect},
      {"expect_is_model_answer", r.expect_is_model_answer},
      {"expect_token", r.expect_token},
      {"expect_token_text", r.expect_token_text},
      {"expect_token_count", r.expect_token_count},
      {"top_token_text", r.top_token_text},
      {"top_prob", r.top_prob},
      {"baseline_prob", r.baseline_prob},
      {"baseline_log_prob", r.baseline_log_prob},
      {"layers", layers},
      {"ablation_layer", r.ablation_layer},
      {"picked_layer", r.picked_layer},
      {"picked_by", r.picked_by},
      {"seconds", r.seconds},
      {"forwards", r.forwards},
  };
  if (r.options.trace) {
    out["corrupted_prob"] = r.corrupted_prob;
    out["embedding_std"] = r.embedding_std;
    out["noise_std"] = r.noise_std;
    out["trace_layer"] = r.trace_layer;
    out["mlp_trace_layer"] = r.mlp_trace_layer;
    out["options"] = {{"samples", r.options.tracing.samples},
                      {"noise", r.options.tracing.noise},
                      {"seed", r.options.tracing.seed},
                      {"window", r.window}};
  }
  return out;
}

std::string format_crown_scan(const CrownScanResult& r) {
  std::string out;
  out += "prompt        " + quoted_for_report(r.prompt) + "\n";
  std::string subject_tokens;
  for (int64_t i = r.subject_first; i <= r.subject_last; ++i)
    subject_tokens += quoted_for_report(r.tokens[static_cast<size_t>(i)]) + " ";
  out += strprintf("subject       tokens %lld..%lld of %zu: %s\n", static_cast<long long>(r.subject_first),
                   static_cast<long long>(r.subject_last), r.tokens.size(), subject_tokens.c_str());
  out += "expect        " + quoted_for_report(r.expect_token_text) +
         strprintf(" (token %lld)", static_cast<long long>(r.expect_token));
  if (r.expect_is_model_answer) out += ", the model's own answer";
  if (r.expect_token_count > 1)
    out += strprintf(", the first of the %lld tokens of %s", static_cast<long long>(r.expect_token_count),
                     quoted_for_report(r.expect).c_str());
  out += "\n";
  out += strprintf("model answer  %s p=%.4f\n", quoted_for_report(r.top_token_text).c_str(), r.top_prob);
  out += strprintf("p(expect)     clean %.4f", r.baseline_prob);
  if (r.options.trace)
    out += strprintf(", subject corrupted %.4f (noise %g x sigma %.4g, %lld samples, seed %llu; MLP window %lld)",
                     r.corrupted_prob, r.options.tracing.noise, r.embedding_std,
                     static_cast<long long>(r.options.tracing.samples),
                     static_cast<unsigned long long>(r.options.tracing.seed), static_cast<long long>(r.window));
  out += "\n\n";

  out += strprintf("%5s %9s | %10s %9s %10s", "layer", "mlp_width", "ablated_p", "delta_p", "delta_logp");
  if (r.options.trace) out += strprintf(" | %9s %9s | %9s %9s %7s", "traced_p", "effect", "mlp_p", "mlp_eff", "window");
  out += "\n";
  for (const CrownLayer& l : r.layers) {
    out += strprintf("%5d %9lld | %10.4f %+9.4f %+10.3g", l.layer, static_cast<long long>(l.mlp_width), l.ablated_prob,
                     l.ablation_delta, l.ablation_log_delta);
    if (r.options.trace)
      out += strprintf(" | %9.4f %+9.4f | %9.4f %+9.4f %3d..%-3d", l.traced_prob, l.indirect_effect, l.mlp_traced_prob,
                       l.mlp_indirect_effect, l.window_first, l.window_last);
    if (l.layer == r.picked_layer) out += "  <- pick";
    if (!l.reaches_answer) out += "  (no later layer reads this position)";
    out += "\n";
  }
  out += "\n";
  const CrownLayer& ablated = r.layers[static_cast<size_t>(r.ablation_layer)];
  out += strprintf("ablation peak       layer %d (delta_p %+.4f, delta_logp %+.3g)\n", r.ablation_layer,
                   ablated.ablation_delta, ablated.ablation_log_delta);
  if (r.options.trace) {
    out += strprintf("hidden-state trace  layer %d (effect %+.4f)\n", r.trace_layer,
                     r.layers[static_cast<size_t>(r.trace_layer)].indirect_effect);
    out += strprintf("MLP-window trace    layer %d (effect %+.4f)\n", r.mlp_trace_layer,
                     r.layers[static_cast<size_t>(r.mlp_trace_layer)].mlp_indirect_effect);
  }
  out += strprintf("picked layer        %d: %s\n", r.picked_layer, r.picked_by.c_str());
  out += strprintf("(%lld forward passes, %.2f s)\n", static_cast<long long>(r.forwards), r.seconds);
  return out;
}

}  // namespace graft::edits
