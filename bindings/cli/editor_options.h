// The options `graft edit` and `graft eval --method` share: which editor, where, and its
// hyperparameters. Every default is the editor's own (edits::RomeOptions(), edits::MemitOptions());
// a flag that is not given leaves it alone, and the help text prints it from there.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "edits/memit.h"
#include "edits/rome.h"

namespace graft {
class Model;
}

namespace graft::cli {

struct EditorArgs {
  std::string method = "rome", layers, stats;
  // Overrides of the editor's defaults; unset: the default.
  std::optional<std::string> fact_token, memit_targets;
  std::optional<int64_t> steps, traced_tokens;
  std::optional<double> learning_rate, clamp, kl_factor, bare_weight, leakage_weight, covariance_weight;
  std::optional<bool> original_keys, through_update;

  // Registers --layers, --stats, --fact-token, --traced-tokens, --steps, --lr, --clamp, --kl-factor,
  // --bare-weight, --leakage-weight, --lambda, --original-keys, --through-update, --memit-targets
  // (and --method when `with_method`).
  void add_options(CLI::App* cmd, bool with_method);
  // InputError naming the option when no statistics file was given or two options contradict
  // each other (checked before any work is done).
  void check_before_work() const;
};

// The editor's options, resolved against a model: ROME without --layers edits the layer crown-scan
// picks for the first request (printed to stderr).
struct Editor {
  std::string method;
  edits::RomeOptions rome;
  edits::MemitOptions memit;
  nlohmann::json options_json() const;  // the options of `method`, every field
};
Editor make_editor(const EditorArgs& args, const Model& model, const std::vector<edits::EditRequest>& requests);

// "3", "1,2,5", "2-5" or a mix; empty text: no layers. InputError naming --layers otherwise.
std::vector<int> parse_layers(const std::string& text);

}  // namespace graft::cli
