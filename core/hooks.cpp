#include "core/hooks.h"

#include <algorithm>
#include <sstream>

#include "arch/arch.h"
#include "core/error.h"
#include "core/io/detail.h"

namespace graft {
namespace {

struct PointName {
  HookPoint point;
  const char* suffix;  // after "blocks.{i}." for layer points; the whole name for model points
  bool per_layer;
};

// One table: the names users type, in forward order.
constexpr PointName kPointNames[] = {
    {HookPoint::Embed, "hook_embed", false},         {HookPoint::ResidPre, "hook_resid_pre", true},
    {HookPoint::AttnQ, "attn.hook_q", true},         {HookPoint::AttnK, "attn.hook_k", true},
    {HookPoint::AttnV, "attn.hook_v", true},         {HookPoint::AttnPattern, "attn.hook_pattern", true},
    {HookPoint::AttnZ, "attn.hook_z", true},         {HookPoint::AttnOut, "hook_attn_out", true},
    {HookPoint::ResidMid, "hook_resid_mid", true},   {HookPoint::MlpPre, "mlp.hook_pre", true},
    {HookPoint::MlpPost, "mlp.hook_post", true},     {HookPoint::MlpDown, "mlp.hook_out", true},
    {HookPoint::MlpOut, "hook_mlp_out", true},       {HookPoint::PleOut, "hook_ple_out", true},
    {HookPoint::ResidPost, "hook_resid_post", true}, {HookPoint::LnFinal, "ln_final.hook_normalized", false},
    {HookPoint::Logits, "hook_logits", false},
};

const PointName& point_name(HookPoint point) {
  for (const auto& p : kPointNames)
    if (p.point == point) return p;
  throw Error("unknown hook point");
}

// Whether layer i of this model really has the point: KV-shared layers compute no K or V, and only
// models with per-layer embeddings have a PLE branch.
bool layer_has_point(const arch::Architecture& arch, int layer, HookPoint point) {
  const auto& spec = arch.layer(layer);
  if (point == HookPoint::AttnK || point == HookPoint::AttnV) return !spec.is_kv_shared();
  if (point == HookPoint::PleOut) return spec.has_per_layer_input;
  return true;
}

std::string shape_string(at::IntArrayRef shape) { return io::detail::shape_string(shape.vec()); }

}  // namespace

std::string HookName::str() const {
  const auto& p = point_name(point);
  if (!p.per_layer) return p.suffix;
  return "blocks." + std::to_string(layer) + "." + p.suffix;
}

std::vector<std::string> hook_names(const arch::Architecture& arch) {
  std::vector<std::string> names{"hook_embed"};
  for (int i = 0; i < arch.num_layers(); ++i)
    for (const auto& p : kPointNames)
      if (p.per_layer && layer_has_point(arch, i, p.point)) names.push_back(HookName{p.point, i}.str());
  names.push_back("ln_final.hook_normalized");
  names.push_back("hook_logits");
  return names;
}

HookName parse_hook_name(const std::string& name, const arch::Architecture& arch) {
  for (const auto& p : kPointNames)
    if (!p.per_layer && name == p.suffix) return HookName{p.point, -1};
  const std::string prefix = "blocks.";
  if (name.rfind(prefix, 0) == 0) {
    const size_t dot = name.find('.', prefix.size());
    const std::string digits = name.substr(prefix.size(),
                                           dot == std::string::npos ? std::string::npos : dot - prefix.size());
    const bool numeric = !digits.empty() && digits.size() < 7 &&
                         std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric && dot != std::string::npos) {
      const int layer = std::stoi(digits);
      const std::string suffix = name.substr(dot + 1);
      for (const auto& p : kPointNames) {
        if (!p.per_layer || suffix != p.suffix) continue;
        if (layer >= arch.num_layers())
          throw InputError("hook \"" + name + "\": layer " + std::to_string(layer) + " out of range (the model has " +
                           std::to_string(arch.num_layers()) + " layers)");
        if (!layer_has_point(arch, layer, p.point))
          throw InputError("hook \"" + name + "\": layer " + std::to_string(layer) +
                           (p.point == HookPoint::PleOut ? " has no per-layer-embedding branch"
                                                         : " is KV-shared and computes no K or V of its own"));
        return HookName{p.point, layer};
      }
    }
  }
  std::string known;
  for (const auto& p : kPointNames)
    known += std::string(known.empty() ? "" : ", ") + (p.per_layer ? "blocks.{i}." : "") + p.suffix;
  throw InputError("unknown hook name \"" + name + "\"; hook names are: " + known);
}

Hooks::Hooks(int num_layers)
    : num_layers_(num_layers), slots_(static_cast<size_t>(kNumHookPoints) * (num_layers + 1)) {}

void Hooks::add(const HookName& name, HookFn fn) {
  const bool per_layer = point_name(name.point).per_layer;
  if (per_layer != (name.layer >= 0) || name.layer >= num_layers_)
    throw InputError("hook \"" + name.str() + "\": layer out of range");
  slots_[slot(name.point, name.layer)].push_back(std::move(fn));
  ++count_;
}

void Hooks::cache(const HookName& name, std::map<std::string, at::Tensor>* store) {
  add(name, [store](const at::Tensor& t, const HookName& n) -> std::optional<at::Tensor> {
    (*store)[n.str()] = t.detach();
    return std::nullopt;
  });
}

at::Tensor Hooks::run(HookPoint point, int layer, at::Tensor tensor) const {
  const HookName name{point, layer};
  for (const auto& fn : slots_[slot(point, layer)]) {
    std::optional<at::Tensor> replacement = fn(tensor, name);
    if (!replacement) continue;
    if (!replacement->defined()) throw InputError("hook \"" + name.str() + "\" returned an undefined tensor");
    if (replacement->sizes() != tensor.sizes())
      throw InputError("hook \"" + name.str() + "\" returned shape " + shape_string(replacement->sizes()) +
                       ", expected " + shape_string(tensor.sizes()));
    tensor = replacement->to(tensor.device(), tensor.scalar_type());
  }
  return tensor;
}

}  // namespace graft
