// Reading the activations an edit is about: the hook points' values at every fact slot of every
// request, in every context.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/hooks.h"
#include "edits/fact_tokens.h"
#include "edits/request.h"

namespace graft {
class Model;
}

namespace graft::edits {

// Activations at every fact slot of `context.format(request.prompt)` for every request and context,
// in one forward pass that stops after the deepest point: one tensor per point, [slots, contexts,
// width] float32 on the model's device. Empty `tokens`: the subject's last token.
std::vector<at::Tensor> subject_activations(const Model& model, const std::vector<EditRequest>& requests,
                                            const std::vector<std::string>& contexts,
                                            const std::vector<HookName>& points,
                                            const std::vector<FactTokens>& tokens = {});

}  // namespace graft::edits
