// MEMIT: many facts at once, spread over a range of layers (Meng et al. 2023). The target residual
// z* is optimised at the last layer of the range; each layer, from the first, takes its share of
// the remaining residual through dW = R K^T (lambda C + K K^T)^-1, solved in float64 at that layer's
// own width. Later layers see the earlier layers' updates; the model is restored at the end.
// MemitTargets::Joint turns this around: the update's directions first, then the values optimised
// through the edited model itself.
#pragma once

#include <string>
#include <vector>

#include "edits/editor.h"
#include "edits/request.h"
#include "edits/stats.h"

namespace graft {
class Model;
}

namespace graft::edits {

// How MEMIT turns the wanted change into each layer's target values.
enum class MemitTargets {
  Auto,           // ResidualSplit, or PerLayer where the MLP output is normalised (sandwich norms)
  ResidualSplit,  // published: z* at the last layer's residual, layer i takes 1/(layers left) of what remains
  // v* re-optimised at each layer's MLP output (earlier layers' updates applied), layer i taking
  // 1/(layers left) of it. For Gemma-style sandwich norms, where the MLP output is normalised before
  // it reaches the residual, so a residual change is not an MLP-output change.
  PerLayer,
  // Each layer's right factor (lambda C + K K^T)^-1 K from the unedited model's keys first; then one
  // set of vectors D, each layer writing dW = D^T A^T / layers, optimised through the forward pass of
  // the model those updates make (every layer edited at once, every position, the requests' changes
  // crossing): the values see what the solve will do to them instead of being shrunk by it after.
  // The update written is the one optimised. The leakage term applies (ValueOptions).
  Joint,
};
MemitTargets parse_memit_targets(const std::string& name);  // auto / residual / per-layer / joint
const char* memit_targets_name(MemitTargets targets);

struct MemitOptions : EditorOptions {
  // Published hyperparameters (kmeng01 hparams/MEMIT, GPT-J): 25 steps, lr 0.5, weight decay 0.5,
  // KL 0.0625, clamp 0.75, lambda 15000, context templates: bare + 5 of 10 tokens.
  MemitOptions();
  std::vector<int> layers;             // required: the layers to spread the edits over
  double covariance_weight = 15000.0;  // lambda (mom2_update_weight)
  MemitTargets targets = MemitTargets::Auto;
  // fact_token Traced: traced per request at the first edited layer.
};

// Every option as JSON (the patch's hyperparameters hold these with the targets resolved, the
// method and the statistics' size).
nlohmann::json to_json(const MemitOptions& options);

// Computes the updates for all requests; the model is left as it was (weights restored exactly).
EditOutcome memit(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                  const MemitOptions& options);

}  // namespace graft::edits
