// The per-layer tensor roles: one enum and one table, keyed the way llama.cpp keys every tensor on
// one enum. Everything per-layer derives from them: the names each family file fills
// (LayerTensors), the tensors a checkpoint must hold and their shapes (expected_tensors), the
// weights the forward pass reads (core's LayerWeights) and how load binds one to the other. Adding
// a role is one enumerator, one row of kTensorRoles, the family file that names it and the forward
// pass that reads it.
//
// Like the rest of arch/, this knows no tensor values and no torch.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "arch/family.h"

namespace graft::arch {

// In the order expected_tensors() lists them, which is the order a checkpoint is checked in: with
// several tensors missing, the first in this order is the one the load error names.
enum class TensorRole : uint8_t {
  AttnPreNorm,           // the norm before attention
  Q,                     // the query projection
  K,                     // the key projection (none on KV-shared layers)
  V,                     // the value projection (none on KV-shared and K == V layers)
  QKV,                   // GPT-2's fused c_attn ([q | k | v] output); q/k/v are then absent
  QNorm,                 // the per-head norm of q, before RoPE
  KNorm,                 // the per-head norm of k, before RoPE
  O,                     // the attention output projection
  AttnPostNorm,          // sandwich families: the norm of the attention output
  MlpPreNorm,            // the norm before the MLP (Llama's "post_attention_layernorm")
  Gate,                  // the MLP's gate projection (gated MLPs)
  Up,                    // the MLP's up projection
  Down,                  // the MLP's down projection: where the editors act
  RouterProj,            // Gemma 4 MoE: the router's projection [E, H] ...
  RouterScale,           // ... its input scale [H] ...
  RouterPerExpertScale,  // ... and each expert's output scale [E]
  MoePreNorm,            // the experts' input norm
  ExpertsGateUp,         // every expert's fused gate and up projection [E, 2I, H]
  ExpertsDown,           // every expert's down projection [E, H, I]
  DensePostNorm,         // the norm of the dense MLP's output, beside the experts'
  MoePostNorm,           // the norm of the experts' output
  MlpPostNorm,           // sandwich families: the norm of the MLP block's output
  PleGate,               // Gemma 4 per-layer embeddings: the gate into the P-wide slot ...
  PleProjection,         // ... the projection back to the residual ...
  PlePostNorm,           // ... and its norm
  LayerScalar,           // Gemma 4: the scalar the layer's output is multiplied by [1]
};
inline constexpr size_t kNumTensorRoles = static_cast<size_t>(TensorRole::LayerScalar) + 1;

// How a role's names become tensors and shapes.
enum class TensorBinding {
  Norm,    // weight [d] and, for LayerNorm, bias [d]
  Linear,  // weight [out, in] (or [in, out] for WeightLayout::InOut) and an optional bias [out]
  Plain,   // one tensor of the listed shape
};

// The sizes a role's shape is made of, each computed from the layer's LayerSpec (expected_tensors).
enum class TensorDim {
  Hidden,         // hidden_size
  HeadDim,        // the layer's head size
  QWidth,         // query heads x head size
  KVWidth,        // KV heads x head size
  QKVWidth,       // QWidth + 2 KVWidth (fused projection)
  MlpWidth,       // the layer's MLP width
  PerLayerInput,  // per_layer_input_size P
  Experts,        // number of experts
  ExpertWidth,    // one expert's MLP width I
  GateUpWidth,    // 2 I: the experts' fused gate and up output
  One,
};

// A shape of rank 1 to 3. For a Linear role it is [out, in], whatever the stored layout.
struct TensorShape {
  constexpr TensorShape(TensorDim a) : rank(1), dims{a, TensorDim::One, TensorDim::One} {}
  constexpr TensorShape(TensorDim out, TensorDim in) : rank(2), dims{out, in, TensorDim::One} {}
  constexpr TensorShape(TensorDim a, TensorDim b, TensorDim c) : rank(3), dims{a, b, c} {}
  int rank;
  std::array<TensorDim, 3> dims;
};

// Which families' checkpoints carry a role: a set of Family bits.
using FamilySet = uint32_t;
constexpr FamilySet family_bit(Family f) { return FamilySet{1} << static_cast<unsigned>(f); }
constexpr bool contains(FamilySet set, Family f) { return (set & family_bit(f)) != 0; }

inline constexpr FamilySet kEveryFamily = family_bit(Family::Llama) | family_bit(Family::Mistral) |
                                          family_bit(Family::Qwen2) | family_bit(Family::Qwen3) |
                                          family_bit(Family::Gemma2) | family_bit(Family::Gemma3) |
                                          family_bit(Family::Gemma4) | family_bit(Family::GPT2);
// The HF decoder layout (separate q/k/v, gated MLP): every family but GPT-2.
inline constexpr FamilySet kDecoderFamilies = kEveryFamily & ~family_bit(Family::GPT2);
inline constexpr FamilySet kSandwichFamilies = family_bit(Family::Gemma2) | family_bit(Family::Gemma3) |
                                               family_bit(Family::Gemma4);
inline constexpr FamilySet kQkNormFamilies = family_bit(Family::Qwen3) | family_bit(Family::Gemma3) |
                                             family_bit(Family::Gemma4);

enum class Presence {
  // Every layer of every family listed.
  EveryLayer,
  // Only layers whose LayerSpec calls for it: K/V and k_norm not on KV-shared layers, V not on
  // K == V layers, the MoE roles only with experts, PLE only with P > 0.
  SomeLayers,
};

struct TensorRoleInfo {
  TensorRole role;
  const char* name;  // for messages: the role as the forward pass calls it
  TensorBinding binding;
  TensorShape shape;
  FamilySet families;
  Presence presence;
};

namespace role_table {
using B = TensorBinding;
using D = TensorDim;
using P = Presence;
using R = TensorRole;
inline constexpr FamilySet kGPT2 = family_bit(Family::GPT2);
inline constexpr FamilySet kGemma4 = family_bit(Family::Gemma4);

inline constexpr std::array<TensorRoleInfo, kNumTensorRoles> kRows = {{
    {R::AttnPreNorm, "attn_pre_norm", B::Norm, {D::Hidden}, kEveryFamily, P::EveryLayer},
    {R::Q, "q", B::Linear, {D::QWidth, D::Hidden}, kDecoderFamilies, P::EveryLayer},
    {R::K, "k", B::Linear, {D::KVWidth, D::Hidden}, kDecoderFamilies, P::SomeLayers},
    {R::V, "v", B::Linear, {D::KVWidth, D::Hidden}, kDecoderFamilies, P::SomeLayers},
    {R::QKV, "qkv", B::Linear, {D::QKVWidth, D::Hidden}, kGPT2, P::EveryLayer},
    {R::QNorm, "q_norm", B::Norm, {D::HeadDim}, kQkNormFamilies, P::EveryLayer},
    {R::KNorm, "k_norm", B::Norm, {D::HeadDim}, kQkNormFamilies, P::SomeLayers},
    {R::O, "o", B::Linear, {D::Hidden, D::QWidth}, kEveryFamily, P::EveryLayer},
    {R::AttnPostNorm, "attn_post_norm", B::Norm, {D::Hidden}, kSandwichFamilies, P::EveryLayer},
    {R::MlpPreNorm, "mlp_pre_norm", B::Norm, {D::Hidden}, kEveryFamily, P::EveryLayer},
    {R::Gate, "gate", B::Linear, {D::MlpWidth, D::Hidden}, kDecoderFamilies, P::EveryLayer},
    {R::Up, "up", B::Linear, {D::MlpWidth, D::Hidden}, kEveryFamily, P::EveryLayer},
    {R::Down, "down", B::Linear, {D::Hidden, D::MlpWidth}, kEveryFamily, P::EveryLayer},
    {R::RouterProj, "router_proj", B::Plain, {D::Experts, D::Hidden}, kGemma4, P::SomeLayers},
    {R::RouterScale, "router_scale", B::Plain, {D::Hidden}, kGemma4, P::SomeLayers},
    {R::RouterPerExpertScale, "router_per_expert_scale", B::Plain, {D::Experts}, kGemma4, P::SomeLayers},
    {R::MoePreNorm, "moe_pre_norm", B::Norm, {D::Hidden}, kGemma4, P::SomeLayers},
    {R::ExpertsGateUp, "experts_gate_up", B::Plain, {D::Experts, D::GateUpWidth, D::Hidden}, kGemma4, P::SomeLayers},
    {R::ExpertsDown, "experts_down", B::Plain, {D::Experts, D::Hidden, D::ExpertWidth}, kGemma4, P::SomeLayers},
    {R::DensePostNorm, "dense_post_norm", B::Norm, {D::Hidden}, kGemma4, P::SomeLayers},
    {R::MoePostNorm, "moe_post_norm", B::Norm, {D::Hidden}, kGemma4, P::SomeLayers},
    {R::MlpPostNorm, "mlp_post_norm", B::Norm, {D::Hidden}, kSandwichFamilies, P::EveryLayer},
    {R::PleGate, "ple_gate", B::Linear, {D::PerLayerInput, D::Hidden}, kGemma4, P::SomeLayers},
    {R::PleProjection, "ple_projection", B::Linear, {D::Hidden, D::PerLayerInput}, kGemma4, P::SomeLayers},
    {R::PlePostNorm, "ple_post_norm", B::Norm, {D::Hidden}, kGemma4, P::SomeLayers},
    {R::LayerScalar, "layer_scalar", B::Plain, {D::One}, kGemma4, P::EveryLayer},
}};

// Row i describes role i, so the table can be indexed by role.
constexpr bool rows_in_role_order() {
  for (size_t i = 0; i < kRows.size(); ++i)
    if (static_cast<size_t>(kRows[i].role) != i) return false;
  return true;
}
static_assert(rows_in_role_order(), "kTensorRoles: one row per TensorRole, in enum order");
}  // namespace role_table

inline constexpr const std::array<TensorRoleInfo, kNumTensorRoles>& kTensorRoles = role_table::kRows;

constexpr const TensorRoleInfo& role_info(TensorRole role) { return kTensorRoles[static_cast<size_t>(role)]; }

// Where a projection's weight is stored as torch.nn.Linear does ([out, in]) or as GPT-2's Conv1D
// ([in, out]). Editors write updates in the layout the checkpoint stores.
enum class WeightLayout { OutIn, InOut };

// HF tensor names of one role (full names, prefix included). An empty weight means the layer has no
// such tensor. A Plain role's one tensor is `weight`; the layout only matters to Linear roles.
struct TensorNames {
  std::string weight, bias;
  WeightLayout layout = WeightLayout::OutIn;
};
using NormNames = TensorNames;
using LinearNames = TensorNames;

// One value per role, indexed by role: LayerTensors here, LayerWeights in core.
template <typename T>
class PerRole {
 public:
  T& operator[](TensorRole role) { return items_[static_cast<size_t>(role)]; }
  const T& operator[](TensorRole role) const { return items_[static_cast<size_t>(role)]; }

 private:
  std::array<T, kNumTensorRoles> items_{};
};

// Every role's names on one layer.
using LayerTensors = PerRole<TensorNames>;

}  // namespace graft::arch
