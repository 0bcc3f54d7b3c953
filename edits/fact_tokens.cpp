#include "edits/fact_tokens.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/model.h"
#include "edits/causal_trace.h"
#include "edits/text.h"
#include "edits/tokens.h"

namespace graft::edits {

std::vector<int64_t> FactTokens::in(int64_t first, int64_t last) const {
  std::vector<int64_t> out;
  for (int64_t offset : from_end) out.push_back(std::max(first, last - offset));
  return out;
}

FactTokenChoice parse_fact_token(const std::string& name) {
  if (name == "last") return FactTokenChoice::Last;
  if (name == "traced") return FactTokenChoice::Traced;
  if (name == "subject") return FactTokenChoice::Subject;
  throw InputError("--fact-token \"" + name + "\": use last, traced or subject");
}

const char* fact_token_name(FactTokenChoice choice) {
  switch (choice) {
    case FactTokenChoice::Last: return "last";
    case FactTokenChoice::Traced: return "traced";
    case FactTokenChoice::Subject: return "subject";
  }
  return "last";
}

FactTokens traced_fact_token(const Model& model, const EditRequest& request, int layer, uint64_t seed, int64_t count,
                             int64_t within_last) {
  const SubjectSpan span = locate_subject(model, request.prompt, request.subject);
  if (span.first == span.last || count < 1) return FactTokens{};
  at::NoGradGuard no_grad;
  TraceOptions options;
  options.seed = seed;
  const CausalTrace tracer(model, span.ids, span.first, span.last, options);
  const int64_t answer =
      last_position_log_probs(model, at::tensor(span.ids, at::kLong).unsqueeze(0)).argmax(-1).item<int64_t>();
  const int64_t span_length = span.last - span.first + 1;
  std::vector<std::pair<double, int64_t>> restored;  // (probability, offset from the end)
  for (int64_t offset = std::max<int64_t>(0, span_length - within_last); offset < span_length; ++offset) {
    const double p = tracer.restored_probability(answer, {HookName{HookPoint::ResidPost, layer}}, span.first + offset);
    restored.emplace_back(p, span_length - 1 - offset);
  }
  std::stable_sort(restored.begin(), restored.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  FactTokens out;
  out.from_end.clear();
  for (size_t k = 0; k < restored.size() && static_cast<int64_t>(k) < count; ++k)
    out.from_end.push_back(restored[k].second);
  if (out.from_end.empty()) out.from_end.push_back(0);
  return out;
}

FactTokens choose_fact_tokens(const Model& model, const EditRequest& request, FactTokenChoice choice,
                              const std::vector<std::string>& contexts, int layer, uint64_t seed,
                              int64_t traced_tokens) {
  if (choice == FactTokenChoice::Last) return FactTokens{};
  // As many tokens, from the end, as the subject has in every context and in the KL prompt: a
  // subject after a prefix can tokenise into fewer tokens than at the start of a text (a leading
  // space merges differently), and its tail is what the contexts share.
  int64_t shared = std::numeric_limits<int64_t>::max();
  auto shorten_to = [&](const std::string& prompt_template) {
    const SubjectSpan span = locate_subject(model, prompt_template, request.subject);
    shared = std::min(shared, span.last - span.first + 1);
  };
  for (const auto& context : contexts) shorten_to(fill_template(context, request.prompt));
  shorten_to(kEssencePrompt);
  if (choice == FactTokenChoice::Traced) return traced_fact_token(model, request, layer, seed, traced_tokens, shared);
  FactTokens out;
  out.from_end.clear();
  for (int64_t k = 0; k < shared; ++k) out.from_end.push_back(k);
  return out;
}

FactTokens fact_tokens_of(const std::vector<FactTokens>& tokens, size_t r) {
  return tokens.empty() ? FactTokens{} : tokens.at(r);
}

std::vector<int64_t> slot_requests(size_t requests, const std::vector<FactTokens>& tokens) {
  std::vector<int64_t> out;
  for (size_t r = 0; r < requests; ++r)
    for (size_t k = 0; k < fact_tokens_of(tokens, r).size(); ++k) out.push_back(static_cast<int64_t>(r));
  return out;
}

std::vector<int64_t> shared_value_slots(const std::vector<EditRequest>& requests,
                                        const std::vector<FactTokens>& tokens) {
  std::map<std::pair<std::string, int64_t>, int64_t> value_of;  // (subject, offset from its end) -> value
  std::vector<int64_t> out;
  for (size_t r = 0; r < requests.size(); ++r)
    for (int64_t offset : fact_tokens_of(tokens, r).from_end) {
      const auto key = std::make_pair(requests[r].subject, offset);
      const auto it = value_of.emplace(key, static_cast<int64_t>(value_of.size())).first;
      out.push_back(it->second);
    }
  return out;
}

}  // namespace graft::edits
