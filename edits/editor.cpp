#include "edits/editor.h"

#include "core/error.h"

namespace graft::edits {

void check_editor_options(const EditorOptions& o) {
  const ValueOptions& v = o.value;
  auto require = [](bool ok, const char* names, const char* what) {
    if (!ok) throw InputError(std::string(names) + ": " + what);
  };
  require(v.steps >= 1, "--steps / steps", "must be at least 1");
  require(v.learning_rate > 0, "--lr / learning_rate", "must be positive");
  require(v.weight_decay >= 0, "weight_decay", "must be >= 0");
  require(v.kl_factor >= 0, "--kl-factor / kl_factor", "must be >= 0");
  require(v.clamp_norm_factor > 0, "--clamp / clamp_norm_factor", "must be positive");
  require(v.leakage_weight >= 0, "--leakage-weight / leakage_weight", "expected a number >= 0");
  require(v.bare_prompt_weight == -1 || (v.bare_prompt_weight >= 0 && v.bare_prompt_weight <= 1),
          "--bare-weight / bare_weight", "expected a number in [0, 1] (or -1: every context counts the same)");
  require(v.chunk_tokens >= 0, "chunk_tokens", "must be >= 0 (0: automatic)");
  require(o.traced_tokens >= 1, "--traced-tokens / traced_tokens", "must be at least 1");
  for (const auto& t : o.templates)
    require(t.tokens >= 1 && t.count >= 0, "templates", "need tokens >= 1 and count >= 0");
}

void add_shared_hyperparameters(const EditorOptions& options, nlohmann::json& hyperparameters) {
  hyperparameters["value"] = to_json(options.value);
  hyperparameters["templates"] = nlohmann::json::array();
  for (const auto& t : options.templates) hyperparameters["templates"].push_back({t.tokens, t.count});
  hyperparameters["fact_token"] = fact_token_name(options.fact_token);
  hyperparameters["traced_tokens"] = options.traced_tokens;
  hyperparameters["seed"] = options.seed;
}

Patch make_patch(const Model& model, EditOutcome outcome, const std::string& method,
                 const std::vector<EditRequest>& requests) {
  PatchProvenance provenance;
  provenance.method = method;
  provenance.hyperparameters = outcome.hyperparameters;
  for (const auto& r : requests) provenance.requests.push_back(request_to_json(r));
  provenance.notes = {{"diagnostics", outcome.diagnostics},
                      {"seconds",
                       {{"templates", outcome.seconds_templates},
                        {"keys", outcome.seconds_keys},
                        {"values", outcome.seconds_values},
                        {"solve", outcome.seconds_solve}}}};
  return Patch::create(model, std::move(outcome.updates), std::move(provenance));
}

}  // namespace graft::edits
