#include "edits/context_templates.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "core/generate.h"
#include "core/model.h"
#include "core/tokenizer/tokenizer.h"

namespace graft::edits {
namespace {

// One spec's sampled prefixes. Braces are blanked so that a prefix can never hold a "{}" of its own.
std::vector<std::string> sampled_prefixes(const Model& model, const TemplateSpec& spec, int64_t bos, uint64_t seed) {
  GenerateOptions options;
  options.max_new_tokens = spec.tokens;
  options.temperature = 1.0;
  options.top_k = 5;
  options.seed = seed;
  options.stop_tokens = std::vector<int64_t>{};
  const Generation g = generate(model, at::full({spec.count, 1}, bos, at::kLong), options);
  std::vector<std::string> out;
  for (int64_t row = 0; row < spec.count; ++row) {
    const at::Tensor ids = g.ids[row].narrow(0, 1, g.ids.size(1) - 1).cpu().contiguous();
    std::string text = model.require_tokenizer().decode(
        std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel()), true);
    std::replace(text.begin(), text.end(), '{', ' ');
    std::replace(text.begin(), text.end(), '}', ' ');
    out.push_back(text + ". {}");
  }
  return out;
}

}  // namespace

std::vector<std::string> context_templates(const Model& model, const std::vector<TemplateSpec>& specs, uint64_t seed) {
  std::vector<std::string> out{"{}"};
  const auto bos = model.require_tokenizer().bos_id();
  if (!bos) return out;  // nothing to start sampling from
  at::NoGradGuard no_grad;
  for (size_t s = 0; s < specs.size(); ++s) {
    if (specs[s].count <= 0) continue;
    for (std::string& text : sampled_prefixes(model, specs[s], *bos, seed + s)) out.push_back(std::move(text));
  }
  return out;
}

}  // namespace graft::edits
