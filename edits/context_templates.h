// The context templates ROME and MEMIT optimise and average over: the bare "{}" plus sampled
// prefixes "<text>. {}", so that an edit holds whatever text comes before the prompt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace graft {
class Model;
}

namespace graft::edits {

// `count` prefixes of `tokens` sampled tokens each.
struct TemplateSpec {
  int64_t tokens = 0;
  int64_t count = 0;
};

// "{}" first, then per spec `count` texts sampled from BOS (top-5, temperature 1, seeded with
// seed + the spec's index), each followed by ". {}", as the reference code builds them. A model
// whose tokenizer has no BOS gets the bare template alone.
std::vector<std::string> context_templates(const Model& model, const std::vector<TemplateSpec>& specs, uint64_t seed);

}  // namespace graft::edits
