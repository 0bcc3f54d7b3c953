// libFuzzer target for the config.json reader: bytes -> JSON -> Architecture::from_json.
//
// A graft::Error is a clean rejection. Anything else is a bug: a crash, a sanitizer report, another
// exception escaping, or an accepted config whose table breaks an invariant the forward pass relies
// on (checked below; a violation traps so libFuzzer records the input).
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "core/error.h"

namespace {

using graft::arch::Architecture;
using graft::arch::LayerSpec;
using graft::arch::RopeKind;
using graft::arch::TensorRole;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// What the rest of graft assumes of every table from_json returns.
void check_invariants(const Architecture& arch) {
  require(arch.num_layers() > 0);
  for (int i = 0; i < arch.num_layers(); ++i) {
    const LayerSpec& l = arch.layer(i);
    require(l.index == i);
    require(l.num_q_heads > 0 && l.num_kv_heads > 0 && l.head_dim > 0 && l.mlp_width > 0);
    require(l.num_q_heads % l.num_kv_heads == 0);
    require(l.is_sliding() == (l.sliding_window > 0));
    // A KV-shared layer reads an earlier, non-shared layer of the same type and K/V shape.
    require(l.kv_source >= 0 && l.kv_source <= i);
    const LayerSpec& source = arch.layer(l.kv_source);
    require(!source.is_kv_shared());
    require(source.attention == l.attention && source.head_dim == l.head_dim && source.num_kv_heads == l.num_kv_heads);
    require(l.is_kv_shared() != l.has_k_proj);
    require(!l.has_v_proj || l.has_k_proj);
    if (l.rope.kind != RopeKind::None) {
      require(l.rope.dim == l.head_dim && l.rope.dim % 2 == 0);
      require(l.rope.rotated_pairs >= 0 && l.rope.rotated_pairs <= l.rope.dim / 2);
      require(l.rope.theta > 0 && l.rope.factor > 0);
    }
    require(!l.tensors[TensorRole::Down].weight.empty());
  }
  int64_t total = 0;
  for (const auto& tensor : arch.expected_tensors()) {
    require(!tensor.name.empty());
    for (int64_t d : tensor.shape) require(d > 0);
  }
  total = arch.parameter_count();
  require(total > 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json config = nlohmann::json::parse(data, data + size, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return 0;
  try {
    auto arch = Architecture::from_json(config, "fuzz");
    check_invariants(*arch);
    // The other entry points a loader calls.
    arch->known_unused_reason("model.layers.0.self_attn.k_proj.weight");
    arch->known_unused_reason("transformer.h.0.attn.bias");
    arch->adopt_checkpoint_prefix({"wte.weight", "language_model.model.embed_tokens.weight"});
    check_invariants(*arch);
  } catch (const graft::Error&) {
    // rejected cleanly
  }
  return 0;
}
