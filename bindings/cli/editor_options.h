// The options `graft edit` and `graft eval --method` share: which editor, where, and its
// hyperparameters (each defaults to the published value when not given).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "edits/memit.h"
#include "edits/rome.h"

namespace graft {
class Model;
}

namespace graft::cli {

struct EditorArgs {
  std::string method = "rome", layers, stats, fact_token = "last", memit_targets = "auto";
  int64_t steps = 0, traced_tokens = 1;
  double learning_rate = 0, clamp = 0, kl_factor = -1, bare_weight = -1, leakage_weight = 0,
         covariance_weight = 15000;
  bool original_keys = false, through_update = false;

  // Registers --layers, --stats, --fact-token, --steps, --lr, --clamp, --kl-factor, --bare-weight,
  // --leakage-weight, --lambda, --original-keys, --through-update, --memit-targets (and --method when `with_method`).
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
};
Editor make_editor(const EditorArgs& args, const Model& model, const std::vector<edits::EditRequest>& requests);

// "3", "1,2,5", "2-5" or a mix; empty text: no layers. InputError naming --layers otherwise.
std::vector<int> parse_layers(const std::string& text);

}  // namespace graft::cli
