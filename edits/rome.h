// ROME: one fact, one rank-1 update of one layer's MLP down projection (Meng et al. 2022), in the
// consistent-key form (Gupta et al. 2024, "Rebuilding ROME") by default and the original form on
// request. The key is blocks.{L}.mlp.hook_post at the subject's last token, at that layer's true
// width; the value is optimised at blocks.{L}.mlp.hook_out through the real forward pass.
#pragma once

#include <vector>

#include "edits/editor.h"
#include "edits/request.h"
#include "edits/stats.h"

namespace graft {
class Model;
}

namespace graft::edits {

struct RomeOptions : EditorOptions {
  // Published hyperparameters (kmeng01 hparams/ROME): 20 steps, lr 0.5, weight decay 0.5,
  // KL 0.0625, clamp 4, context templates [[5, 10], [10, 10]].
  RomeOptions();
  int layer = -1;                     // required: the layer to edit (crown-scan picks one)
  bool covariance_adjustment = true;  // u = C^-1 k (false: u = k)
  // true (default): the constraint uses the same context-averaged key and value as the direction
  // (r-ROME); false: the bare prompt's key and value, as the original code.
  bool consistent_keys = true;
  // false (published): each value is optimised as a vector added at its fact token of each prompt,
  // blind to what the rank-P update will do elsewhere. true: ROME's update is linear in the values
  // (dW = R^T B^T, B = U G^-1 fixed by the keys and the statistics), so the values are optimised
  // through that update, applied at every position of every prompt: the continuation of a
  // multi-token target, the prefixed contexts' own keys. The update written is the one optimised.
  bool through_update = false;
};

// Every option as JSON (the patch's hyperparameters hold these, the method and the statistics' size).
nlohmann::json to_json(const RomeOptions& options);

// Computes the update for one request; the model is left as it was.
EditOutcome rome(const Model& model, const EditRequest& request, const KeyStatistics& stats,
                 const RomeOptions& options);
// The same with the context templates given: context_templates(model, options.templates,
// options.seed) depends only on the model and the seed, so an evaluation that edits each request
// alone on one model samples them once (as the reference code caches them).
EditOutcome rome(const Model& model, const EditRequest& request, const KeyStatistics& stats, const RomeOptions& options,
                 const std::vector<std::string>& contexts);

// ROME over several requests, one at a time as the reference applies them: each request is edited
// on the model with the earlier ones applied; the rank-1 factors of one tensor are concatenated
// (a rank-r update). The model's weights are restored exactly at the end.
EditOutcome rome_sequential(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                            const RomeOptions& options);

}  // namespace graft::edits
