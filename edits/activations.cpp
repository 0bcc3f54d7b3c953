#include "edits/activations.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "core/model.h"
#include "edits/batch.h"
#include "edits/text.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

// The token rows, one per (request, context), and the (row, position) of every (slot, context),
// slot-major.
struct SlotRows {
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::pair<int64_t, int64_t>> row_position;
};

SlotRows slot_rows(const Model& model, const std::vector<EditRequest>& requests,
                   const std::vector<std::string>& contexts, const std::vector<FactTokens>& tokens) {
  SlotRows out;
  const int64_t c = static_cast<int64_t>(contexts.size());
  for (size_t r = 0; r < requests.size(); ++r) {
    const FactTokens fact = fact_tokens_of(tokens, r);
    std::vector<std::vector<int64_t>> positions;  // per context
    for (const auto& context : contexts) {
      const SubjectSpan span = locate_subject(model, fill_template(context, requests[r].prompt), requests[r].subject);
      positions.push_back(fact.in(span.first, span.last));
      out.rows.push_back(span.ids);
    }
    const int64_t first_row = static_cast<int64_t>(out.rows.size()) - c;
    for (size_t k = 0; k < fact.size(); ++k)
      for (int64_t j = 0; j < c; ++j)
        out.row_position.emplace_back(first_row + j, positions[static_cast<size_t>(j)][k]);
  }
  return out;
}

}  // namespace

std::vector<at::Tensor> subject_activations(const Model& model, const std::vector<EditRequest>& requests,
                                            const std::vector<std::string>& contexts,
                                            const std::vector<HookName>& points,
                                            const std::vector<FactTokens>& tokens) {
  const SlotRows slots = slot_rows(model, requests, contexts, tokens);
  const PaddedBatch batch = pad_right(model, slots.rows);
  std::vector<int64_t> gather;  // flat index (row * length + position) per (slot, context)
  for (const auto& [row, position] : slots.row_position) gather.push_back(row * batch.length() + position);
  const at::Tensor index = at::tensor(gather, at::kLong).to(model.device());
  std::vector<at::Tensor> captured(points.size());
  Hooks hooks(model.arch().num_layers());
  for (size_t p = 0; p < points.size(); ++p)
    hooks.add(points[p], [&captured, &index, p](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      captured[p] = x.flatten(0, 1).index_select(0, index).detach();
      return std::nullopt;
    });
  int deepest = 0;
  for (const auto& p : points) deepest = std::max(deepest, p.layer + 1);
  at::NoGradGuard no_grad;
  ForwardOptions forward;
  forward.attention_mask = batch.mask;
  forward.hooks = &hooks;
  forward.stop_after_layers = deepest;
  model.forward(batch.ids, forward);
  const int64_t c = static_cast<int64_t>(contexts.size());
  for (auto& t : captured) t = t.to(at::kFloat).reshape({-1, c, t.size(-1)});
  return captured;
}

}  // namespace graft::edits
