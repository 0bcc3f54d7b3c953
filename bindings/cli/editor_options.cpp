#include "bindings/cli/editor_options.h"

#include <cstdio>
#include <stdexcept>

#include "core/error.h"
#include "core/model.h"
#include "edits/crown_scan.h"

namespace graft::cli {

std::vector<int> parse_layers(const std::string& text) {
  std::vector<int> layers;
  size_t start = 0;
  while (start < text.size()) {
    const size_t comma = text.find(',', start);
    const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    try {
      const size_t dash = part.find('-', 1);
      size_t used = 0;
      if (dash == std::string::npos) {
        layers.push_back(std::stoi(part, &used));
        if (used != part.size()) throw std::invalid_argument(part);
      } else {
        const int from = std::stoi(part.substr(0, dash)), to = std::stoi(part.substr(dash + 1));
        if (to < from) throw std::invalid_argument(part);
        for (int l = from; l <= to; ++l) layers.push_back(l);
      }
    } catch (const std::exception&) {
      throw InputError("--layers \"" + text + "\": expected layer numbers like 3, 1,2,5 or 2-5");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return layers;
}

void EditorArgs::add_options(CLI::App* cmd, bool with_method) {
  if (with_method)
    cmd->add_option("--method", method, "rome or memit")->capture_default_str()->check(CLI::IsMember({"rome", "memit"}));
  cmd->add_option("--layers", layers, "Layers to edit (ROME: one; default: crown-scan's pick. MEMIT: e.g. 0-2)");
  cmd->add_option("--stats", stats, "Statistics from `graft stats` holding those layers");
  cmd->add_option("--fact-token", fact_token,
                  "last (published), traced (the subject token causal tracing picks) or subject (every subject token: a rank-P update)")
      ->capture_default_str()
      ->check(CLI::IsMember({"last", "traced", "subject"}));
  cmd->add_option("--traced-tokens", traced_tokens, "With --fact-token traced: edit the K subject tokens that restore the answer best")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", steps, "Value-optimisation steps (default: published, ROME 20, MEMIT 25)")->check(CLI::PositiveNumber);
  cmd->add_option("--lr", learning_rate, "Value-optimisation learning rate (default 0.5)")->check(CLI::PositiveNumber);
  cmd->add_option("--clamp", clamp, "Norm clamp factor (default ROME 4, MEMIT 0.75)")->check(CLI::PositiveNumber);
  cmd->add_option("--kl-factor", kl_factor, "KL weight (default 0.0625)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--bare-weight", bare_weight,
                  "The bare prompt's share of the value objective, prefixed contexts sharing the rest (default: all equal)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--leakage-weight", leakage_weight,
                  "ROME, MEMIT with --memit-targets joint: weight of the update's expected change of the MLP output over "
                  "the statistics' tokens in the value objective (default 0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--lambda", covariance_weight, "MEMIT covariance weight")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--original-keys", original_keys, "ROME as originally coded (bare-prompt keys in the constraint)");
  cmd->add_flag("--through-update", through_update,
                "ROME: optimise the values through the rank-P update they imply, at every position of every prompt "
                "(MEMIT's counterpart: --memit-targets joint)");
  cmd->add_option("--memit-targets", memit_targets,
                  "MEMIT: residual (published: z* at the last layer, split), per-layer (v* re-optimised at each layer's MLP "
                  "output, for sandwich norms), joint (values optimised through the update the solve makes of them) or auto")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "residual", "per-layer", "joint"}));
}

void EditorArgs::check_before_work() const {
  if (stats.empty()) throw InputError("--stats: editing needs the statistics from `graft stats` for the edited layers");
  if (through_update && method != "rome")
    throw InputError("--through-update: a ROME option; MEMIT optimises its values through the update with --memit-targets joint");
}

Editor make_editor(const EditorArgs& a, const Model& model, const std::vector<edits::EditRequest>& requests) {
  if (requests.empty()) throw InputError("--requests: no edit requests");
  Editor editor;
  editor.method = a.method;
  std::vector<int> layers = parse_layers(a.layers);
  auto tune = [&](edits::ValueOptions& v) {
    if (a.steps > 0) v.steps = a.steps;
    if (a.learning_rate > 0) v.learning_rate = a.learning_rate;
    if (a.clamp > 0) v.clamp_norm_factor = a.clamp;
    if (a.kl_factor >= 0) v.kl_factor = a.kl_factor;
    if (a.bare_weight >= 0) v.bare_prompt_weight = a.bare_weight;
    v.leakage_weight = a.leakage_weight;
  };
  if (a.method == "rome") {
    if (layers.empty()) {
      // The layer where the first request's fact lives, over the whole depth (crown-scan's pick).
      const auto& r = requests.front();
      layers.push_back(edits::crown_scan(model, r.prompt, r.subject, r.target_true).picked_layer);
      std::fprintf(stderr, "graft: crown-scan picked layer %d\n", layers.front());
    }
    if (layers.size() != 1) throw InputError("--layers: ROME edits one layer");
    editor.rome.layer = layers.front();
    editor.rome.consistent_keys = !a.original_keys;
    editor.rome.through_update = a.through_update;
    editor.rome.fact_token = edits::parse_fact_token(a.fact_token);
    editor.rome.traced_tokens = a.traced_tokens;
    tune(editor.rome.value);
  } else if (a.method == "memit") {
    editor.memit.layers = layers;
    editor.memit.covariance_weight = a.covariance_weight;
    editor.memit.fact_token = edits::parse_fact_token(a.fact_token);
    editor.memit.traced_tokens = a.traced_tokens;
    editor.memit.targets = edits::parse_memit_targets(a.memit_targets);
    tune(editor.memit.value);
  } else {
    throw InputError("--method \"" + a.method + "\": use rome or memit");
  }
  return editor;
}

}  // namespace graft::cli
