#include "bindings/cli/editor_options.h"

#include <cstdio>
#include <sstream>
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

namespace {

// "ROME 20, MEMIT 25" (or one value when both editors agree): a default as the help text shows it.
template <typename T>
std::string shown(T value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

template <typename T>
std::string both_defaults(T rome, T memit) {
  return rome == memit ? shown(rome) : "ROME " + shown(rome) + ", MEMIT " + shown(memit);
}

// [0, 1], or -1 (the published "every context counts the same").
const CLI::Validator kBareWeight(
    [](std::string& text) -> std::string {
      double value = 0;
      try {
        value = std::stod(text);
      } catch (const std::exception&) {
        return "expected a number";
      }
      return value == -1 || (value >= 0 && value <= 1) ? "" : "expected a number in [0, 1], or -1";
    },
    "[0, 1] or -1");

template <typename T>
void set_if(const std::optional<T>& given, T& field) {
  if (given) field = *given;
}

}  // namespace

void EditorArgs::add_options(CLI::App* cmd, bool with_method) {
  const edits::RomeOptions rome;
  const edits::MemitOptions memit;
  const auto& rv = rome.value;
  const auto& mv = memit.value;
  if (with_method)
    cmd->add_option("--method", method, "rome or memit")
        ->capture_default_str()
        ->check(CLI::IsMember({"rome", "memit"}));
  cmd->add_option("--layers", layers, "Layers to edit (ROME: one; default: crown-scan's pick. MEMIT: e.g. 0-2)");
  cmd->add_option("--stats", stats, "Statistics from `graft stats` holding those layers");
  cmd->add_option(
         "--fact-token", fact_token,
         "last (published), traced (the subject token causal tracing picks) or subject (every subject token: a "
         "rank-P update); default " +
             both_defaults<std::string>(edits::fact_token_name(rome.fact_token),
                                        edits::fact_token_name(memit.fact_token)))
      ->check(CLI::IsMember({"last", "traced", "subject"}));
  cmd->add_option("--traced-tokens", traced_tokens,
                  "With --fact-token traced: edit the K subject tokens that restore the answer best (default " +
                      both_defaults(rome.traced_tokens, memit.traced_tokens) + ")")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", steps, "Value-optimisation steps (default " + both_defaults(rv.steps, mv.steps) + ")")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lr", learning_rate,
                  "Value-optimisation learning rate (default " + both_defaults(rv.learning_rate, mv.learning_rate) +
                      ")")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--clamp", clamp,
                  "Norm clamp factor (default " + both_defaults(rv.clamp_norm_factor, mv.clamp_norm_factor) + ")")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kl-factor", kl_factor, "KL weight (default " + both_defaults(rv.kl_factor, mv.kl_factor) + ")")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--bare-weight", bare_weight,
                  "The bare prompt's share of the value objective, prefixed contexts sharing the rest (default " +
                      both_defaults(rv.bare_prompt_weight, mv.bare_prompt_weight) + "; -1: all contexts equal)")
      ->check(kBareWeight);
  cmd->add_option(
         "--leakage-weight", leakage_weight,
         "ROME, MEMIT with --memit-targets joint: weight of the update's expected change of the MLP output over "
         "the statistics' tokens in the value objective (default " +
             both_defaults(rv.leakage_weight, mv.leakage_weight) + "; 0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--lambda", covariance_weight,
                  "MEMIT covariance weight (default " + shown(memit.covariance_weight) + ")")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--original-keys,!--consistent-keys", original_keys,
                std::string("ROME as originally coded (bare-prompt keys in the constraint); default ") +
                    (rome.consistent_keys ? "--consistent-keys" : "--original-keys"));
  cmd->add_flag("--through-update,!--no-through-update", through_update,
                std::string(
                    "ROME: optimise the values through the rank-P update they imply, at every position of every prompt "
                    "(MEMIT's counterpart: --memit-targets joint); default ") +
                    (rome.through_update ? "on" : "off"));
  cmd->add_option(
         "--memit-targets", memit_targets,
         "MEMIT: residual (published: z* at the last layer, split), per-layer (v* re-optimised at each layer's MLP "
         "output, for sandwich norms), joint (values optimised through the update the solve makes of them) or auto "
         "(default " +
             std::string(edits::memit_targets_name(memit.targets)) + ")")
      ->check(CLI::IsMember({"auto", "residual", "per-layer", "joint"}));
}

void EditorArgs::check_before_work() const {
  if (stats.empty()) throw InputError("--stats: editing needs the statistics from `graft stats` for the edited layers");
  if (through_update.value_or(false) && method != "rome")
    throw InputError(
        "--through-update: a ROME option; MEMIT optimises its values through the update with --memit-targets joint");
}

namespace {

// The flags every editor shares, applied over its defaults.
void apply_shared(const EditorArgs& a, edits::EditorOptions& o) {
  if (a.fact_token) o.fact_token = edits::parse_fact_token(*a.fact_token);
  set_if(a.traced_tokens, o.traced_tokens);
  set_if(a.steps, o.value.steps);
  set_if(a.learning_rate, o.value.learning_rate);
  set_if(a.clamp, o.value.clamp_norm_factor);
  set_if(a.kl_factor, o.value.kl_factor);
  set_if(a.bare_weight, o.value.bare_prompt_weight);
  set_if(a.leakage_weight, o.value.leakage_weight);
}

}  // namespace

nlohmann::json Editor::options_json() const { return method == "rome" ? edits::to_json(rome) : edits::to_json(memit); }

Editor make_editor(const EditorArgs& a, const Model& model, const std::vector<edits::EditRequest>& requests) {
  if (requests.empty()) throw InputError("--requests: no edit requests");
  Editor editor;
  editor.method = a.method;
  std::vector<int> layers = parse_layers(a.layers);
  if (a.method == "rome") {
    if (layers.empty()) {
      // The layer where the first request's fact lives, over the whole depth (crown-scan's pick).
      const auto& r = requests.front();
      layers.push_back(edits::crown_scan(model, r.prompt, r.subject, r.target_true).picked_layer);
      std::fprintf(stderr, "graft: crown-scan picked layer %d\n", layers.front());
    }
    if (layers.size() != 1) throw InputError("--layers: ROME edits one layer");
    editor.rome.layer = layers.front();
    if (a.original_keys) editor.rome.consistent_keys = !*a.original_keys;
    set_if(a.through_update, editor.rome.through_update);
    apply_shared(a, editor.rome);
  } else if (a.method == "memit") {
    editor.memit.layers = layers;
    set_if(a.covariance_weight, editor.memit.covariance_weight);
    if (a.memit_targets) editor.memit.targets = edits::parse_memit_targets(*a.memit_targets);
    apply_shared(a, editor.memit);
  } else {
    throw InputError("--method \"" + a.method + "\": use rome or memit");
  }
  return editor;
}

}  // namespace graft::cli
