// ROME: one fact, one rank-1 update of one layer's MLP down projection (Meng et al. 2022), in the
// consistent-key form (Gupta et al. 2024, "Rebuilding ROME") by default and the original form on
// request. The key is blocks.{L}.mlp.hook_post at the subject's last token, at that layer's true
// width; the value is optimised at blocks.{L}.mlp.hook_out through the real forward pass.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "edits/patch.h"
#include "edits/request.h"
#include "edits/rewrite.h"
#include "edits/stats.h"

namespace graft {
class Model;
}

namespace graft::edits {

struct RomeOptions {
  int layer = -1;                   // required: the layer to edit (crown-scan picks one)
  // Published hyperparameters (kmeng01 hparams/ROME): 20 steps, lr 0.5, weight decay 0.5,
  // KL 0.0625, clamp 4, context templates [[5, 10], [10, 10]].
  ValueOptions value{{HookPoint::MlpDown, -1}, 20, 0.5, 0.5, 0.0625, 4.0, 5e-2};
  std::vector<TemplateSpec> templates{{5, 10}, {10, 10}};
  bool covariance_adjustment = true;  // u = C^-1 k (false: u = k)
  // true (default): the constraint uses the same context-averaged key and value as the direction
  // (r-ROME); false: the bare prompt's key and value, as the original code.
  bool consistent_keys = true;
  // Where the key is read and the value written: the subject's last token (ROME's published
  // "subject_last"), or the subject token that causal tracing finds carries the fact.
  FactTokenChoice fact_token = FactTokenChoice::Last;
  int64_t traced_tokens = 1;  // with Traced: how many of the best-restoring subject tokens
  // false (published): each value is optimised as a vector added at its fact token of each prompt,
  // blind to what the rank-P update will do elsewhere. true: ROME's update is linear in the values
  // (dW = R^T B^T, B = U G^-1 fixed by the keys and the statistics), so the values are optimised
  // through that update, applied at every position of every prompt: the continuation of a
  // multi-token target, the prefixed contexts' own keys. The update written is the one optimised.
  bool through_update = false;
  uint64_t seed = 1;
};

struct EditOutcome {
  std::vector<TensorUpdate> updates;
  nlohmann::json hyperparameters;
  nlohmann::json diagnostics;  // per layer / request: condition, ridge, norms, final loss, target probability
  double seconds_templates = 0, seconds_keys = 0, seconds_values = 0, seconds_solve = 0;
  double seconds() const { return seconds_templates + seconds_keys + seconds_values + seconds_solve; }
};

// Computes the update for one request; the model is left as it was.
EditOutcome rome(const Model& model, const EditRequest& request, const KeyStatistics& stats, const RomeOptions& options);

nlohmann::json to_json(const ValueOptions& options);

}  // namespace graft::edits

namespace graft::edits {

// The patch an edit outcome becomes: its updates, the method, hyperparameters, requests and
// diagnostics (with the time split) as provenance.
Patch make_patch(const Model& model, EditOutcome outcome, const std::string& method, const std::vector<EditRequest>& requests);

// ROME over several requests, one at a time as the reference applies them: each request is edited
// on the model with the earlier ones applied; the rank-1 factors of one tensor are concatenated
// (a rank-r update). The model's weights are restored exactly at the end.
EditOutcome rome_sequential(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                            const RomeOptions& options);

}  // namespace graft::edits
