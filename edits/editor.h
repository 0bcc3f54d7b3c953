// What every editor (ROME, MEMIT) shares: the options they have in common, the outcome they return,
// and the patch an outcome becomes.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "edits/context_templates.h"
#include "edits/fact_tokens.h"
#include "edits/patch.h"
#include "edits/request.h"
#include "edits/value_optimizer.h"

namespace graft {
class Model;
}

namespace graft::edits {

// The options every editor has. Each editor's own struct (RomeOptions, MemitOptions) derives from
// this one and sets the defaults in its constructor: that constructor is the one place a default
// is written; the CLI, the Python module and the Python wrappers read it from there.
struct EditorOptions {
  ValueOptions value;                   // the value optimisation (value_optimizer.h)
  std::vector<TemplateSpec> templates;  // context templates besides the bare "{}"
  // Where keys are read and values written: the subject's last token (published), the subject token
  // causal tracing finds carries the fact, or every subject token.
  FactTokenChoice fact_token = FactTokenChoice::Last;
  int64_t traced_tokens = 1;  // with Traced: how many of the best-restoring subject tokens
  uint64_t seed = 1;          // seeds the context templates and the tracing noise
};

// InputError naming the option (CLI flag and field) for a value out of range.
void check_editor_options(const EditorOptions& options);

// The fields of EditorOptions as provenance (templates as [tokens, count] pairs).
void add_shared_hyperparameters(const EditorOptions& options, nlohmann::json& hyperparameters);

struct EditOutcome {
  std::vector<TensorUpdate> updates;
  nlohmann::json hyperparameters;
  nlohmann::json diagnostics;  // per layer / request: condition, ridge, norms, final loss, target probability
  double seconds_templates = 0, seconds_keys = 0, seconds_values = 0, seconds_solve = 0;
  double seconds() const { return seconds_templates + seconds_keys + seconds_values + seconds_solve; }
};

// The patch an edit outcome becomes: its updates, the method, hyperparameters, requests and
// diagnostics (with the time split) as provenance.
Patch make_patch(const Model& model, EditOutcome outcome, const std::string& method,
                 const std::vector<EditRequest>& requests);

}  // namespace graft::edits
