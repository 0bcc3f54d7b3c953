// Text generation with the KV cache: greedy or sampled (temperature, top-k, top-p, seed), batched
// with left padding, stopping at stop tokens.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/model.h"

namespace graft {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  uint64_t seed = 0;
  // Generation of a row stops after it emits one of these (default: the model's EOS ids).
  std::optional<std::vector<int64_t>> stop_tokens;
  // Called after each step with the number of tokens generated so far (progress bars).
  std::function<void(int64_t)> on_step;
};

struct Generation {
  at::Tensor ids;             // [B, S + generated]; rows that stopped early are padded with their stop token
  at::Tensor attention_mask;  // [B, S + generated]: 0 for left padding and for positions after a stop
  int64_t generated = 0;      // steps taken
};

// input_ids [B, S]; attention_mask [B, S] (0 = left padding), optional.
Generation generate(const Model& model, const at::Tensor& input_ids, const GenerateOptions& options,
                    const at::Tensor& attention_mask = {});

// The next token for each row of last-position logits [B, V] under the sampling options.
at::Tensor select_next_tokens(const at::Tensor& logits, const GenerateOptions& options, at::Generator& generator);

}  // namespace graft
