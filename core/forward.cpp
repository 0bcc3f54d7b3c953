// The forward pass. One pass serves every family: what differs (norm offsets, soft-caps, sandwich
// norms, q/k/v norms, per-layer embeddings, K == V, KV sharing, MoE) is read from the LayerSpec
// table that arch/ filled at load. Hook points are marked with apply_hook(...), which costs one
// flag test when nothing is hooked.
#include <ATen/ATen.h>

#include <map>

#include "core/error.h"
#include "core/gemv.h"
#include "core/model.h"
#include "core/rms_norm.h"
#include "core/rope.h"
#include "core/small_attention.h"

namespace graft {
namespace {

using arch::LayerSpec;
using arch::ModelSpec;
using Role = arch::TensorRole;

// ---------------------------------------------------------------------------------------------
// Building blocks

// Decoding multiplies one row per sequence by each matrix: that product only reads the matrix, and
// small_batch_linear (core/gemv.h) reads it faster than LibTorch's CPU path does.
at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {}) {
  at::Tensor y = small_batch_linear(x, weight, bias);
  return y.defined() ? y : at::linear(x, weight, bias);
}

at::Tensor linear(const at::Tensor& x, const LinearWeights& w) {
  if (w.layout == arch::WeightLayout::OutIn) return project(x, w.weight, w.bias);
  if (at::Tensor y = small_batch_linear(x, w.weight, w.bias, /*in_out=*/true); y.defined()) return y;
  // GPT-2's Conv1D stores [in, out]; with its bias, one addmm as HF's Conv1D does (a product and
  // then an addition would write the output twice).
  if (!w.bias.defined()) return at::matmul(x, w.weight);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.weight.size(1);
  return at::addmm(w.bias, x.reshape({-1, x.size(-1)}), w.weight).view(shape);
}

// RMSNorm in float32. Gemma multiplies by (offset + w) in float32 and then casts; Llama casts
// first and multiplies in the input dtype. A norm without weight (Gemma 4's v_norm) only rescales.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, const ModelSpec& spec) {
  const double offset = spec.norm_casts_before_weight ? 0.0 : spec.norm_weight_offset;
  if (at::Tensor y = fused_rms_norm(x, weight, offset, spec.norm_eps); y.defined()) return y;  // float32 on the CPU
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor normed = xf * at::pow(xf.pow(2).mean(-1, /*keepdim=*/true) + spec.norm_eps, -0.5);
  if (!weight.defined()) return normed.to(x.scalar_type());
  if (spec.norm_casts_before_weight) return weight * normed.to(x.scalar_type());
  at::Tensor scale = weight.to(at::kFloat);
  if (spec.norm_weight_offset != 0.0) scale = scale + spec.norm_weight_offset;
  return (normed * scale).to(x.scalar_type());
}

at::Tensor norm(const at::Tensor& x, const NormWeights& w, const ModelSpec& spec) {
  if (spec.norm_kind == arch::NormKind::LayerNorm)
    return at::layer_norm(x, {x.size(-1)}, w.weight, w.bias, spec.norm_eps);
  return rms_norm(x, w.weight, spec);
}

at::Tensor activation(const at::Tensor& x, arch::Activation kind) {
  switch (kind) {
    case arch::Activation::SiLU: return at::silu(x);
    case arch::Activation::GeluTanh: return at::gelu(x, "tanh");
    case arch::Activation::Gelu: return at::gelu(x);
    case arch::Activation::Relu: return at::relu(x);
  }
  return x;
}

at::Tensor soft_cap(const at::Tensor& x, double cap) { return at::tanh(x / cap) * cap; }

// ---------------------------------------------------------------------------------------------
// Per-forward state shared by the layers

struct Step {
  int64_t batch = 0, seq = 0, past = 0;
  at::Tensor positions;                                     // [B, S]
  at::Tensor key_mask;                                      // [B, past + S] bool
  std::map<int64_t, at::Tensor> masks;                      // sliding window (0 = full) -> allowed [B, 1, S, T] bool
  std::map<std::string, RotaryTable> rotary;                // keyed by the RoPE parameters
  at::Tensor per_layer_inputs;                              // Gemma 4 PLE, [B, S, L, P]
  std::vector<std::pair<at::Tensor, at::Tensor>> layer_kv;  // K/V each layer produced (for sharing)
};

}  // namespace

struct ForwardState {
  Step step;
  at::Tensor residual;    // hook_resid_mid of the checkpoint's layer
  at::Tensor activation;  // its MLP activation, before hook_post
};

namespace {

// attention_allowed for a few query rows on the CPU, written out: a decoding step would otherwise
// spend some twenty small tensor operations per window on a [B, 1, 1, T] mask.
at::Tensor attention_allowed_cpu(const Step& step, int64_t window) {
  const int64_t total = step.past + step.seq;
  const at::Tensor key_mask = step.key_mask.contiguous();
  const bool* keys = key_mask.data_ptr<bool>();
  at::Tensor allowed = at::empty({step.batch, 1, step.seq, total}, key_mask.options());
  bool* out = allowed.data_ptr<bool>();
  for (int64_t b = 0; b < step.batch; ++b)
    for (int64_t s = 0; s < step.seq; ++s) {
      const int64_t query = step.past + s;
      bool* row = out + (b * step.seq + s) * total;
      bool any = false;
      for (int64_t t = 0; t < total; ++t) {
        row[t] = t <= query && (window <= 0 || t > query - window) && keys[b * total + t];
        any = any || row[t];
      }
      if (!any) row[query] = true;
    }
  return allowed;
}

// Which keys each query may see: causal, within the layer's window, not padding. A query row that
// would see nothing (a padding query) is allowed its own position so the softmax stays finite.
at::Tensor attention_allowed(const Step& step, int64_t window) {
  if (step.key_mask.device().is_cpu() && step.seq <= kSmallBatchRows) return attention_allowed_cpu(step, window);
  const auto device = step.key_mask.device();
  const int64_t total = step.past + step.seq;
  at::Tensor q_index = at::arange(step.past, total, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(1);
  at::Tensor k_index = at::arange(0, total, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0);
  at::Tensor allowed = k_index <= q_index;
  if (window > 0) allowed = allowed.logical_and(k_index > q_index - window);
  allowed = allowed.unsqueeze(0).unsqueeze(0).logical_and(step.key_mask.unsqueeze(1).unsqueeze(1));  // [B,1,S,T]
  at::Tensor sees_nothing = allowed.any(-1, /*keepdim=*/true).logical_not();
  at::Tensor own = (k_index == q_index).unsqueeze(0).unsqueeze(0);
  return allowed.logical_or(sees_nothing.logical_and(own));
}

// softmax(q k^T * scale [soft-capped] + mask) v, with grouped K/V heads. q: [B, Hq, S, D],
// k/v: [B, Hkv, T, D]. The fused kernel is used unless the pattern is hooked or logits are capped.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed,
                  const LayerSpec& layer, const Hooks* hooks) {
  const bool want_pattern = hook_wanted(hooks, HookPoint::AttnPattern, layer.index);
  if (!want_pattern) {  // decoding on the CPU: a few query rows
    at::Tensor z = small_query_attention(q, k, v, allowed, layer.attention_scale, layer.attn_logit_softcap);
    if (z.defined()) return z;
  }
  if (!want_pattern && layer.attn_logit_softcap == 0.0) {
    return at::scaled_dot_product_attention(q, k, v, allowed, 0.0, false, layer.attention_scale,
                                            /*enable_gqa=*/layer.num_q_heads != layer.num_kv_heads);
  }
  const int64_t groups = layer.num_q_heads / layer.num_kv_heads;
  at::Tensor keys = groups > 1 ? k.repeat_interleave(groups, 1) : k;
  at::Tensor values = groups > 1 ? v.repeat_interleave(groups, 1) : v;
  at::Tensor scores = at::matmul(q, keys.transpose(-1, -2)) * layer.attention_scale;
  if (layer.attn_logit_softcap != 0.0) scores = soft_cap(scores, layer.attn_logit_softcap);
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  at::Tensor pattern = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  pattern = apply_hook(hooks, HookPoint::AttnPattern, layer.index, pattern);
  return at::matmul(pattern, values);
}

class Forward {
 public:
  Forward(const Model& model, const ForwardOptions& options) : model_(model), spec_(model.spec()), options_(options) {}

  at::Tensor run(const at::Tensor& input_ids);

 private:
  void prepare_step(const at::Tensor& ids);
  at::Tensor embed(const at::Tensor& ids);
  at::Tensor per_layer_inputs(const at::Tensor& ids, const at::Tensor& embeds);
  at::Tensor layer(int i, at::Tensor x);
  at::Tensor attention(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& x);
  at::Tensor resume(const at::Tensor& input_ids, const ForwardState& state);
  at::Tensor attention_block(const LayerSpec& spec, const LayerWeights& w, at::Tensor x);
  at::Tensor mlp_block(const LayerSpec& spec, const LayerWeights& w, at::Tensor x, const at::Tensor& activation);
  at::Tensor mlp_activation(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& x);
  at::Tensor mlp_output(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& activation);
  at::Tensor mixture_of_experts(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& residual);
  at::Tensor per_layer_branch(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& x);
  at::Tensor logits(at::Tensor x);
  const RotaryTable& rotary_for(const LayerSpec& layer);
  const at::Tensor& allowed_for(const LayerSpec& layer);
  at::Tensor hook(HookPoint point, int layer, at::Tensor x) {
    return apply_hook(options_.hooks, point, layer, std::move(x));
  }

  const Model& model_;
  const ModelSpec& spec_;
  const ForwardOptions& options_;
  Step step_;
};

void Forward::prepare_step(const at::Tensor& ids) {
  step_.batch = ids.size(0);
  step_.seq = ids.size(1);
  KVCache* cache = options_.cache;
  step_.past = cache ? cache->length() : 0;
  const auto device = ids.device();
  const int64_t total = step_.past + step_.seq;

  at::Tensor mask = options_.attention_mask;
  if (mask.defined()) {
    mask = mask.to(device).to(at::kBool);
    if (mask.dim() != 2 || mask.size(0) != step_.batch || (mask.size(1) != total && mask.size(1) != step_.seq))
      throw InputError("attention_mask: expected shape [" + std::to_string(step_.batch) + ", " + std::to_string(total) +
                       "] (past + new tokens) or [" + std::to_string(step_.batch) + ", " + std::to_string(step_.seq) +
                       "]");
    if (mask.size(1) == step_.seq && step_.past > 0) mask = at::cat({cache->key_mask(), mask}, 1);
  } else {
    at::Tensor fresh = at::ones({step_.batch, step_.seq}, at::TensorOptions().dtype(at::kBool).device(device));
    mask = step_.past > 0 ? at::cat({cache->key_mask(), fresh}, 1) : fresh;
  }
  step_.key_mask = mask;

  if (options_.position_ids.defined()) {
    step_.positions = options_.position_ids.to(device).to(at::kLong);
    if (step_.positions.sizes() != ids.sizes()) throw InputError("position_ids: expected the shape of input_ids");
  } else {
    // Positions count real tokens only, so a left-padded row gets the positions it has alone.
    at::Tensor counted = mask.to(at::kLong).cumsum(1) - 1;
    step_.positions = counted.narrow(1, step_.past, step_.seq).clamp_min(0);
  }
  step_.layer_kv.assign(spec_.layers.size(), {});
}

at::Tensor Forward::embed(const at::Tensor& ids) {
  const at::Tensor& table = model_.embed_tokens();
  at::Tensor x = at::embedding(table, ids);
  if (spec_.embed_scale != 1.0) {
    // HF rounds the scale to the weight dtype before multiplying (39.25 for sqrt(1536) in bf16).
    x = x * at::scalar_tensor(spec_.embed_scale, at::TensorOptions().dtype(at::kFloat))
                .to(table.scalar_type())
                .to(x.device());
  }
  if (spec_.learned_positions) x = x + at::embedding(model_.position_embeddings(), step_.positions);
  return x;
}

// Gemma 4 per-layer embeddings: a token-identity part (its own embedding table) and a context part
// (a projection of the scaled embeddings, normalised per layer slot), scaled by the per_layer_*_scale
// factors arch/ read from the config.
at::Tensor Forward::per_layer_inputs(const at::Tensor& ids, const at::Tensor& embeds) {
  const int64_t layers = static_cast<int64_t>(spec_.layers.size());
  const int64_t width = spec_.per_layer_input_size;
  const at::Tensor& table = model_.ple_embed();
  const at::Tensor token_scale = at::scalar_tensor(spec_.per_layer_token_scale, at::TensorOptions().dtype(at::kFloat))
                                     .to(table.scalar_type())
                                     .to(ids.device());
  at::Tensor tokens = at::embedding(table, ids) * token_scale;
  tokens = tokens.reshape({step_.batch, step_.seq, layers, width});
  at::Tensor context = project(embeds, model_.ple_model_projection()) * spec_.per_layer_projection_scale;
  context = context.reshape({step_.batch, step_.seq, layers, width});
  context = rms_norm(context, model_.ple_projection_norm().weight, spec_);
  return (context + tokens) * spec_.per_layer_combine_scale;
}

const RotaryTable& Forward::rotary_for(const LayerSpec& layer) {
  const std::string key = rope_key(layer.rope);
  auto it = step_.rotary.find(key);
  if (it == step_.rotary.end()) {
    const RotaryTable table = rotary_table(layer.rope, step_.positions, model_.dtype(),
                                           model_.rope_frequencies(layer.index));
    it = step_.rotary.emplace(key, table).first;
  }
  return it->second;
}

const at::Tensor& Forward::allowed_for(const LayerSpec& layer) {
  const int64_t window = layer.is_sliding() ? layer.sliding_window : 0;
  auto it = step_.masks.find(window);
  if (it == step_.masks.end()) it = step_.masks.emplace(window, attention_allowed(step_, window)).first;
  return it->second;
}

at::Tensor Forward::attention(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& x) {
  const int64_t B = step_.batch, S = step_.seq, D = layer.head_dim;
  const int i = layer.index;
  const bool rope = layer.rope.kind != arch::RopeKind::None;

  at::Tensor q, k_raw, v_raw;
  if (w[Role::QKV].defined()) {  // GPT-2: one fused projection
    auto parts = linear(x, w[Role::QKV]).split(layer.num_q_heads * D, -1);
    q = parts[0], k_raw = parts[1], v_raw = parts[2];
  } else {
    q = linear(x, w[Role::Q]);
    if (!layer.is_kv_shared()) {
      k_raw = linear(x, w[Role::K]);
      v_raw = layer.k_eq_v ? k_raw : linear(x, w[Role::V]);  // K == V: V is the raw key projection
    }
  }

  q = q.view({B, S, layer.num_q_heads, D});
  if (layer.has_qk_norm) q = rms_norm(q, w[Role::QNorm].weight, spec_);
  if (rope) q = apply_rotary(q, rotary_for(layer));
  q = hook(HookPoint::AttnQ, i, q);

  at::Tensor keys, values;  // [B, Hkv, T, D]
  if (layer.is_kv_shared()) {
    std::tie(keys, values) = step_.layer_kv[layer.kv_source];
    if (!keys.defined()) throw Error("layer " + std::to_string(i) + " reads K/V of a layer that produced none");
  } else {
    at::Tensor k = k_raw.view({B, S, layer.num_kv_heads, D});
    at::Tensor v = v_raw.view({B, S, layer.num_kv_heads, D});
    if (layer.has_qk_norm) k = rms_norm(k, w[Role::KNorm].weight, spec_);
    if (layer.has_v_norm) v = rms_norm(v, at::Tensor(), spec_);
    if (rope) k = apply_rotary(k, rotary_for(layer));
    k = hook(HookPoint::AttnK, i, k);
    v = hook(HookPoint::AttnV, i, v);
    keys = k.transpose(1, 2);
    values = v.transpose(1, 2);
    if (options_.cache) std::tie(keys, values) = options_.cache->append(i, keys, values);
    step_.layer_kv[i] = {keys, values};
  }

  at::Tensor allowed = allowed_for(layer);
  // (Kept whole when the pattern is hooked, so hook_pattern is always [B, Hq, S, past + S].)
  if (layer.is_sliding() && layer.sliding_window > 0 && !hook_wanted(options_.hooks, HookPoint::AttnPattern, i)) {
    // Keys older than the window of the earliest query are never seen: leave them out of the
    // product instead of masking them (decoding long past the window stays O(window) per token).
    const int64_t first = std::max<int64_t>(0, step_.past - layer.sliding_window + 1);
    if (first > 0) {
      const int64_t seen = keys.size(2) - first;
      keys = keys.narrow(2, first, seen), values = values.narrow(2, first, seen);
      allowed = allowed.narrow(3, first, seen);
    }
  }
  at::Tensor z = attend(q.transpose(1, 2), keys, values, allowed, layer, options_.hooks);
  z = hook(HookPoint::AttnZ, i, z.transpose(1, 2));
  return linear(z.reshape({B, S, layer.num_q_heads * D}), w[Role::O]);
}

// The MLP's activation: the input of the down projection, before hook_post runs.
at::Tensor Forward::mlp_activation(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& x) {
  const int i = layer.index;
  if (spec_.gated_mlp) {
    at::Tensor pre = hook(HookPoint::MlpPre, i, linear(x, w[Role::Gate]));
    return activation(pre, spec_.activation) * linear(x, w[Role::Up]);
  }
  at::Tensor pre = hook(HookPoint::MlpPre, i, linear(x, w[Role::Up]));
  return activation(pre, spec_.activation);
}

at::Tensor Forward::mlp_output(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& activation) {
  const at::Tensor post = hook(HookPoint::MlpPost, layer.index, activation);
  return hook(HookPoint::MlpDown, layer.index, linear(post, w[Role::Down]));
}

// Gemma 4 MoE block: a router on the pre-norm residual picks top-k experts per token; each expert is
// a GeGLU MLP on its own pre-norm of the residual; outputs are weighted and summed.
at::Tensor Forward::mixture_of_experts(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& residual) {
  const int64_t H = spec_.hidden_size;
  at::Tensor flat = residual.reshape({-1, H});
  at::Tensor routed = rms_norm(flat, at::Tensor(), spec_) * w[Role::RouterScale].weight * layer.moe.router_input_scale;
  at::Tensor probabilities = at::softmax(at::linear(routed, w[Role::RouterProj].weight), -1, at::kFloat);
  auto [top_weights, top_index] = probabilities.topk(layer.moe.top_k, -1);
  top_weights = top_weights / top_weights.sum(-1, /*keepdim=*/true);
  top_weights = top_weights *
                w[Role::RouterPerExpertScale].weight.index_select(0, top_index.flatten()).view_as(top_index);

  at::Tensor inputs = norm(flat, w[Role::MoePreNorm], spec_);
  at::Tensor out = at::zeros_like(inputs);
  const int64_t width = layer.moe.expert_width;
  at::Tensor hits = top_index.flatten().bincount({}, layer.moe.num_experts).cpu();
  for (int64_t e = 0; e < layer.moe.num_experts; ++e) {
    if (hits[e].item<int64_t>() == 0) continue;
    auto where = at::where(top_index == e);  // (token, slot) pairs routed to expert e
    const at::Tensor& tokens = where[0];
    at::Tensor weight = top_weights.flatten().index_select(0, tokens * layer.moe.top_k + where[1]);
    at::Tensor gate_up = at::linear(inputs.index_select(0, tokens), w[Role::ExpertsGateUp].weight[e]);
    at::Tensor hidden = activation(gate_up.narrow(-1, 0, width), spec_.activation) * gate_up.narrow(-1, width, width);
    at::Tensor y = at::linear(hidden, w[Role::ExpertsDown].weight[e]) * weight.unsqueeze(-1);
    out.index_add_(0, tokens, y.to(out.scalar_type()));
  }
  return out.reshape(residual.sizes());
}

at::Tensor Forward::per_layer_branch(const LayerSpec& layer, const LayerWeights& w, const at::Tensor& x) {
  at::Tensor slot = step_.per_layer_inputs.select(2, layer.index);
  at::Tensor g = activation(linear(x, w[Role::PleGate]), spec_.activation) * slot;
  return norm(linear(g, w[Role::PleProjection]), w[Role::PlePostNorm], spec_);
}

at::Tensor Forward::layer(int i, at::Tensor x) {
  const LayerSpec& spec = spec_.layers[i];
  const LayerWeights& w = model_.layer_weights(i);
  x = attention_block(spec, w, std::move(x));
  const at::Tensor activation = mlp_activation(spec, w, norm(x, w[Role::MlpPreNorm], spec_));
  ForwardCheckpoint* checkpoint = options_.checkpoint;
  if (checkpoint != nullptr && checkpoint->layer == i && !checkpoint->captured())
    checkpoint->state = std::make_shared<const ForwardState>(ForwardState{step_, x.detach(), activation.detach()});
  return mlp_block(spec, w, x, activation);
}

// Residual in, residual after attention (hook_resid_mid) out.
at::Tensor Forward::attention_block(const LayerSpec& spec, const LayerWeights& w, at::Tensor x) {
  const int i = spec.index;
  x = hook(HookPoint::ResidPre, i, std::move(x));
  at::Tensor a = attention(spec, w, norm(x, w[Role::AttnPreNorm], spec_));
  if (spec_.sandwich_norms) a = norm(a, w[Role::AttnPostNorm], spec_);
  x = x + hook(HookPoint::AttnOut, i, a);
  return hook(HookPoint::ResidMid, i, x);
}

// The rest of the layer from the MLP's activation on: the down projection, the experts, the norms,
// the per-layer input; hook_resid_post out.
at::Tensor Forward::mlp_block(const LayerSpec& spec, const LayerWeights& w, at::Tensor x,
                              const at::Tensor& activation) {
  const int i = spec.index;
  at::Tensor m = mlp_output(spec, w, activation);
  if (spec.moe.num_experts > 0)
    m = norm(m, w[Role::DensePostNorm], spec_) + norm(mixture_of_experts(spec, w, x), w[Role::MoePostNorm], spec_);
  if (spec_.sandwich_norms) m = norm(m, w[Role::MlpPostNorm], spec_);
  x = x + hook(HookPoint::MlpOut, i, m);

  if (spec.has_per_layer_input) x = x + hook(HookPoint::PleOut, i, per_layer_branch(spec, w, x));
  if (spec.has_layer_scalar) x = x * w[Role::LayerScalar].weight;
  return hook(HookPoint::ResidPost, i, x);
}

at::Tensor Forward::logits(at::Tensor x) {
  if (options_.logit_positions.defined()) {
    if (options_.last_position_only) throw InputError("logit_positions: not with last_position_only");
    x = x.flatten(0, 1).index_select(0, options_.logit_positions.to(x.device())).unsqueeze(0);
  }
  x = norm(x, model_.final_norm(), spec_);
  x = hook(HookPoint::LnFinal, -1, x);
  if (options_.last_position_only) x = x.narrow(1, x.size(1) - 1, 1);
  at::Tensor out = project(x, model_.lm_head());
  if (spec_.final_logit_softcap != 0.0) out = soft_cap(out, spec_.final_logit_softcap);
  return hook(HookPoint::Logits, -1, out);
}

at::Tensor Forward::run(const at::Tensor& input_ids) {
  if (input_ids.dim() != 2) throw InputError("input_ids: expected a 2-D tensor [batch, sequence]");
  if (input_ids.size(1) == 0) throw InputError("input_ids: empty sequence");
  if (options_.checkpoint != nullptr) {
    if (options_.cache != nullptr) throw InputError("forward: a checkpoint and a KV cache cannot be used together");
    const int layer = options_.checkpoint->layer;
    if (layer < 0 || layer >= static_cast<int>(spec_.layers.size()))
      throw InputError("forward: checkpoint layer " + std::to_string(layer) + " outside [0, " +
                       std::to_string(spec_.layers.size()) + ")");
    if (options_.stop_after_layers >= 0 && options_.stop_after_layers <= layer)
      throw InputError("forward: the pass stops before its checkpoint layer");
    if (options_.checkpoint->captured()) return resume(input_ids, *options_.checkpoint->state);
  }
  at::Tensor ids = input_ids.to(model_.device()).to(at::kLong);
  const int64_t low = ids.min().item<int64_t>(), high = ids.max().item<int64_t>();
  if (low < 0 || high >= spec_.vocab_size)
    throw InputError("input_ids: token id " + std::to_string(low < 0 ? low : high) + " outside the vocabulary [0, " +
                     std::to_string(spec_.vocab_size) + ")");
  prepare_step(ids);

  at::Tensor x = embed(ids);
  if (spec_.per_layer_input_size > 0) step_.per_layer_inputs = per_layer_inputs(ids, x);
  x = hook(HookPoint::Embed, -1, x);

  const int layers = static_cast<int>(spec_.layers.size());
  const int stop = options_.stop_after_layers < 0 ? layers : std::min(options_.stop_after_layers, layers);
  for (int i = 0; i < stop; ++i) x = layer(i, std::move(x));
  if (options_.cache) options_.cache->commit(step_.seq, step_.key_mask);
  if (stop < layers) return x;
  return logits(std::move(x));
}

// A pass from a checkpoint: the state below the checkpoint's layer is the capturing pass's.
at::Tensor Forward::resume(const at::Tensor& input_ids, const ForwardState& state) {
  if (input_ids.size(0) != state.step.batch || input_ids.size(1) != state.step.seq)
    throw InputError("forward: input_ids [" + std::to_string(input_ids.size(0)) + ", " +
                     std::to_string(input_ids.size(1)) + "] differ from the checkpoint's [" +
                     std::to_string(state.step.batch) + ", " + std::to_string(state.step.seq) + "]");
  step_ = state.step;
  const int first = options_.checkpoint->layer;
  at::Tensor x = mlp_block(spec_.layers[first], model_.layer_weights(first), state.residual, state.activation);
  const int layers = static_cast<int>(spec_.layers.size());
  const int stop = options_.stop_after_layers < 0 ? layers : std::min(options_.stop_after_layers, layers);
  for (int i = first + 1; i < stop; ++i) x = layer(i, std::move(x));
  if (stop < layers) return x;
  return logits(std::move(x));
}

}  // namespace

at::Tensor Model::forward(const at::Tensor& input_ids, const ForwardOptions& options) const {
  // No autograd guard here: weights never require gradients, so plain inference records nothing,
  // and the editors can optimise a vector added at a hook through this same pass.
  Forward pass(*this, options);
  return pass.run(input_ids);
}

}  // namespace graft
