#include "edits/causal_trace.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>

#include "core/model.h"

namespace graft::edits {
namespace {

// Rows 1.. get `noise` added to the subject's embeddings; row 0 stays clean.
void corrupt_subject(Hooks& hooks, const at::Tensor& noise, int64_t first) {
  hooks.add(HookName{HookPoint::Embed, -1},
            [noise, first](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
              at::Tensor out = x.clone();
              out.narrow(0, 1, noise.size(0)).narrow(1, first, noise.size(1)).add_(noise.to(out.options()));
              return out;
            });
}

// At `point`, the corrupted rows take the clean row's value at `position`.
void restore_from_clean_row(Hooks& hooks, const HookName& point, int64_t position) {
  hooks.add(point, [position](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
    at::Tensor out = x.clone();
    out.narrow(0, 1, x.size(0) - 1).select(1, position).copy_(x.select(0, 0).select(0, position));
    return out;
  });
}

}  // namespace

double embedding_std(const Model& model) {
  const at::Tensor& table = model.embed_tokens();
  const int64_t rows = table.size(0), chunk = 16384;
  double sum = 0, squares = 0;
  for (int64_t start = 0; start < rows; start += chunk) {
    at::Tensor part = table.narrow(0, start, std::min(chunk, rows - start)).to(at::kDouble);
    sum += part.sum().item<double>();
    squares += part.pow(2).sum().item<double>();
  }
  const double n = static_cast<double>(table.numel());
  const double variance = std::max(0.0, (squares - sum * sum / n) / (n - 1));
  return std::sqrt(variance) * model.spec().embed_scale;
}

at::Tensor last_position_log_probs(const Model& model, const at::Tensor& ids, const Hooks* hooks) {
  ForwardOptions options;
  options.last_position_only = true;
  options.hooks = hooks;
  return model.forward(ids, options).select(1, 0).to(at::kDouble).log_softmax(-1);
}

CausalTrace::CausalTrace(const Model& model, std::vector<int64_t> ids, int64_t subject_first, int64_t subject_last,
                         const TraceOptions& options)
    : model_(model), options_(options), subject_first_(subject_first), sigma_(embedding_std(model)) {
  at::Generator generator = at::detail::createCPUGenerator(options.seed);
  const int64_t subject_tokens = subject_last - subject_first + 1;
  noise_ = (at::randn({options.samples, subject_tokens, model.spec().hidden_size}, generator,
                      at::TensorOptions().dtype(at::kFloat)) *
            noise_std())
               .to(model.device());
  batch_ = at::tensor(ids, at::kLong).unsqueeze(0).expand({options.samples + 1, -1}).contiguous();
}

double CausalTrace::restored_probability(int64_t token, const std::vector<HookName>& restored, int64_t position) const {
  at::NoGradGuard no_grad;
  Hooks hooks(model_.arch().num_layers());
  corrupt_subject(hooks, noise_, subject_first_);
  for (const HookName& point : restored) restore_from_clean_row(hooks, point, position);
  const at::Tensor log_p = last_position_log_probs(model_, batch_, &hooks).select(1, token).cpu();
  ++forwards_;
  return log_p.narrow(0, 1, options_.samples).exp().mean().item<double>();
}

}  // namespace graft::edits
