// A loaded model: the architecture table (arch/), its weights (memory-mapped where the dtype allows),
// its tokenizer, and the forward pass. The forward pass knows no family by name: it reads LayerSpec.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "core/hooks.h"
#include "core/io/safetensors.h"

namespace graft {

class Tokenizer;
class KVCache;
struct ForwardState;  // core/forward.cpp

// A forward pass's state at one layer's MLP activation (blocks.{layer}.mlp.hook_post, before that
// hook runs): the residual stream there, the activation, and what the later layers read of the
// earlier ones (positions, masks, K/V for KV-shared layers, per-layer inputs). The editors run
// hundreds of passes over one batch that change nothing below the edited layer; every pass after
// the first starts here. Nothing in it carries gradients.
struct ForwardCheckpoint {
  int layer = -1;  // where to capture; set before the first pass
  std::shared_ptr<const ForwardState> state;
  bool captured() const { return state != nullptr; }
};

struct LoadOptions {
  std::string device = "cpu";
  // Compute dtype; empty: the checkpoint's own floating dtype (float32 / bfloat16 / float16).
  std::optional<at::ScalarType> dtype;
};

struct ForwardOptions {
  // [B, past + S] (or [B, S] when there is no past) of 1 for real tokens and 0 for padding.
  at::Tensor attention_mask;
  // [B, S]; default: from the attention mask (cumsum - 1, so left padding gives each row the
  // positions it has alone), else past + arange(S).
  at::Tensor position_ids;
  KVCache* cache = nullptr;
  const Hooks* hooks = nullptr;
  // Compute logits for the last position only (generation); hook_logits then sees [B, 1, V].
  bool last_position_only = false;
  // Stop after this many layers and return the residual stream (no final norm, no logits); -1: all.
  int stop_after_layers = -1;
  // Flat positions (row * S + position, int64 [N]): the final norm and the LM head run there only
  // and the logits are [1, N, V] (hook_ln_final and hook_logits see [1, N, .]). A loss that reads
  // a few positions of a long batch need not pay for the vocabulary at the others.
  at::Tensor logit_positions;
  // Not yet captured: the pass runs whole and captures its state at checkpoint->layer. Captured:
  // the pass starts there (same input_ids, mask and positions as the capturing pass; hooks at
  // points before blocks.{layer}.mlp.hook_post do not run). No KV cache.
  ForwardCheckpoint* checkpoint = nullptr;
};

// One tensor role's tensors as the checkpoint stores them (a Plain role's one tensor is `weight`).
struct TensorWeights {
  at::Tensor weight, bias;
  arch::WeightLayout layout = arch::WeightLayout::OutIn;
  bool defined() const { return weight.defined(); }
};
using LinearWeights = TensorWeights;
using NormWeights = TensorWeights;

// Every role's weights on one layer, indexed by arch::TensorRole (undefined where the layer has none).
using LayerWeights = arch::PerRole<TensorWeights>;

class Model {
 public:
  // Reads config.json (arch/), the weights (model.safetensors or shards) and, when present,
  // tokenizer.json. Errors name the file and tensor.
  static std::shared_ptr<Model> load(const std::string& model_dir, const LoadOptions& options = {});
  ~Model();

  const arch::Architecture& arch() const { return *arch_; }
  const arch::ModelSpec& spec() const { return arch_->spec(); }
  const std::string& dir() const { return dir_; }
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }  // null when the directory has none
  const Tokenizer& require_tokenizer() const;                      // InputError naming the directory
  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

  // input_ids [B, S] (int64, any device): logits [B, S, V] (or [B, 1, V]) in the model dtype.
  at::Tensor forward(const at::Tensor& input_ids, const ForwardOptions& options = {}) const;

  std::vector<std::string> hook_names() const { return graft::hook_names(*arch_); }

  // The live tensor behind an HF name (editors update it in place; copy-on-write keeps the file
  // intact). InputError naming the tensor when the model does not use it.
  at::Tensor& weight(const std::string& name);
  const at::Tensor& weight(const std::string& name) const;
  bool has_weight(const std::string& name) const { return weights_.count(name) > 0; }
  // The checkpoint as stored on disk (original bytes and dtype, whatever the compute dtype):
  // patch fingerprints hash these.
  const io::Checkpoint& checkpoint() const { return *checkpoint_; }
  const std::map<std::string, at::Tensor>& weights() const { return weights_; }
  const LayerWeights& layer_weights(int i) const { return layers_.at(static_cast<size_t>(i)); }
  const at::Tensor& embed_tokens() const { return embed_tokens_; }
  const at::Tensor& position_embeddings() const { return position_embeddings_; }  // GPT-2
  const at::Tensor& lm_head() const { return lm_head_; }
  const NormWeights& final_norm() const { return final_norm_; }
  const at::Tensor& ple_embed() const { return ple_embed_; }
  const at::Tensor& ple_model_projection() const { return ple_model_projection_; }
  const NormWeights& ple_projection_norm() const { return ple_projection_norm_; }
  // Bytes of weight data the forward pass reads (tied tensors once).
  int64_t weight_bytes() const;
  // Layer i's RoPE inverse frequencies, computed once at load (a decoding step would otherwise
  // rebuild them each step). Undefined for layers without RoPE and for dynamic NTK, whose
  // frequencies depend on the sequence length.
  const at::Tensor& rope_frequencies(int i) const { return rope_frequencies_.at(static_cast<size_t>(i)); }

 private:
  Model() = default;
  void bind_layer_weights();
  void compute_rope_frequencies();

  std::string dir_;
  std::unique_ptr<arch::Architecture> arch_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<io::Checkpoint> checkpoint_;  // owns the mappings the CPU tensors point into
  at::Device device_{at::kCPU};
  at::ScalarType dtype_ = at::kFloat;
  std::map<std::string, at::Tensor> weights_;
  std::vector<LayerWeights> layers_;
  std::vector<at::Tensor> rope_frequencies_;  // per layer; layers with one RoPE share a tensor
  at::Tensor embed_tokens_, position_embeddings_, lm_head_, ple_embed_, ple_model_projection_;
  NormWeights final_norm_, ple_projection_norm_;
};

// Keys and values of past tokens, for incremental decoding. Only layers that compute their own K/V
// have a slot: a KV-shared layer reads its source layer's slot and stores nothing.
class KVCache {
 public:
  // Room for `capacity` tokens per row; grows (doubling) when exceeded.
  KVCache(const Model& model, int64_t batch_size, int64_t capacity);

  int64_t length() const { return length_; }
  int64_t batch_size() const { return batch_size_; }
  // [B, length] validity of every cached position (0 for left padding).
  const at::Tensor& key_mask() const { return key_mask_; }
  // Bytes held by the cache (for memory reports).
  int64_t bytes() const;

  // Used by the forward pass: appends this step's K/V for `layer` at positions [length, length + S)
  // and returns views over everything cached so far, [B, Hkv, length + S, D].
  std::pair<at::Tensor, at::Tensor> append(int layer, const at::Tensor& k, const at::Tensor& v);
  std::pair<at::Tensor, at::Tensor> view(int layer, int64_t total) const;
  // Called once per forward, after all layers: the step's tokens become part of the past.
  void commit(int64_t new_tokens, const at::Tensor& new_key_mask);

 private:
  void grow(int64_t needed);
  int64_t batch_size_;
  int64_t capacity_;
  int64_t length_ = 0;
  std::vector<at::Tensor> keys_, values_;  // undefined for KV-shared layers
  at::Tensor key_mask_;
  at::TensorOptions options_;
};

}  // namespace graft
