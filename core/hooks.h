// TransformerLens-style hook points: named places in the forward pass where a tensor can be read
// or replaced. Names are parsed once into (point, layer) and kept in a flat table, so a forward pass
// with no hooks checks one flag per point and does nothing else.
//
//   hook_embed                      [B, S, H]    scaled token (+ position) embeddings
//   blocks.{i}.hook_resid_pre       [B, S, H]    input of decoder layer i
//   blocks.{i}.attn.hook_q          [B, S, Hq, D]   after q-norm and RoPE
//   blocks.{i}.attn.hook_k / hook_v [B, S, Hkv, D]  after k-norm / v-norm and RoPE (not on KV-shared layers)
//   blocks.{i}.attn.hook_pattern    [B, Hq, S, T]   softmax attention weights
//   blocks.{i}.attn.hook_z          [B, S, Hq, D]   per head, before the output projection
//   blocks.{i}.hook_attn_out        [B, S, H]    what the attention block adds to the residual
//   blocks.{i}.hook_resid_mid       [B, S, H]
//   blocks.{i}.mlp.hook_pre         [B, S, I]    pre-activation (gate projection on gated MLPs)
//   blocks.{i}.mlp.hook_post        [B, S, I]    input of the down projection: the editors' key,
//                                                I = intermediate_size_for_layer(i)
//   blocks.{i}.mlp.hook_out         [B, S, H]    output of the MLP's down projection, before any
//                                                post-norm (Gemma) or MoE mixing: what ROME edits
//   blocks.{i}.hook_mlp_out         [B, S, H]    what the MLP block adds to the residual
//   blocks.{i}.hook_ple_out         [B, S, H]    Gemma 4 per-layer-embedding branch output
//   blocks.{i}.hook_resid_post      [B, S, H]    output of decoder layer i
//   ln_final.hook_normalized        [B, S, H]    input of the LM head
//   hook_logits                     [B, S, V]
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace graft {

namespace arch {
class Architecture;
}

enum class HookPoint : uint8_t {
  Embed,
  ResidPre,
  AttnQ,
  AttnK,
  AttnV,
  AttnPattern,
  AttnZ,
  AttnOut,
  ResidMid,
  MlpPre,
  MlpPost,
  MlpDown,
  MlpOut,
  PleOut,
  ResidPost,
  LnFinal,
  Logits,
};
constexpr int kNumHookPoints = static_cast<int>(HookPoint::Logits) + 1;

// A hook point at a layer (layer -1 for the model-level points).
struct HookName {
  HookPoint point;
  int layer = -1;
  std::string str() const;
  bool operator<(const HookName& o) const { return point < o.point || (point == o.point && layer < o.layer); }
  bool operator==(const HookName& o) const { return point == o.point && layer == o.layer; }
};

// Parses a hook name and checks it against the model (layer range, and points the layer really
// has); InputError listing close valid names otherwise.
HookName parse_hook_name(const std::string& name, const arch::Architecture& arch);
// Every hook name this model offers, in forward order.
std::vector<std::string> hook_names(const arch::Architecture& arch);

// A hook reads the tensor and may return a replacement of the same shape (std::nullopt: keep it).
using HookFn = std::function<std::optional<at::Tensor>(const at::Tensor& tensor, const HookName& name)>;

class Hooks {
 public:
  explicit Hooks(int num_layers);

  void add(const HookName& name, HookFn fn);
  // Records the tensor at `name` into `(*store)[name.str()]` (detached); the pointer must outlive runs.
  void cache(const HookName& name, std::map<std::string, at::Tensor>* store);
  bool empty() const { return count_ == 0; }

  bool active(HookPoint point, int layer) const { return !slots_[slot(point, layer)].empty(); }
  // Runs the hooks at (point, layer) in order. A replacement must match the shape; it is moved to
  // the original's dtype and device. Errors name the hook.
  at::Tensor run(HookPoint point, int layer, at::Tensor tensor) const;

 private:
  size_t slot(HookPoint point, int layer) const {
    return static_cast<size_t>(point) * static_cast<size_t>(num_layers_ + 1) + static_cast<size_t>(layer + 1);
  }
  int num_layers_;
  size_t count_ = 0;
  std::vector<std::vector<HookFn>> slots_;
};

// The call sites in the forward pass: free when `hooks` is null or the point has no hook.
inline at::Tensor apply_hook(const Hooks* hooks, HookPoint point, int layer, at::Tensor tensor) {
  if (hooks == nullptr || !hooks->active(point, layer)) return tensor;
  return hooks->run(point, layer, std::move(tensor));
}
inline bool hook_wanted(const Hooks* hooks, HookPoint point, int layer) {
  return hooks != nullptr && hooks->active(point, layer);
}

}  // namespace graft
