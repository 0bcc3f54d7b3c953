// graft info MODEL_DIR [--json]: what the architecture layer reads from config.json, per layer.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "arch/arch.h"
#include "bindings/cli/commands.h"
#include "core/io/safetensors.h"

namespace graft::cli {
namespace {

nlohmann::json rope_json(const arch::RopeSpec& r) {
  if (r.kind == arch::RopeKind::None) return nullptr;
  return {{"type", arch::rope_kind_name(r.kind)},
          {"theta", r.theta},
          {"dim", r.dim},
          {"rotated_pairs", r.rotated_pairs},
          {"factor", r.factor}};
}

nlohmann::json info_json(const arch::Architecture& a, const std::string& dir) {
  const auto& s = a.spec();
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : s.layers) {
    nlohmann::json row = {{"layer", l.index},
                          {"attention", arch::attention_kind_name(l.attention)},
                          {"sliding_window", l.sliding_window},
                          {"head_dim", l.head_dim},
                          {"q_heads", l.num_q_heads},
                          {"kv_heads", l.num_kv_heads},
                          {"kv_source", l.kv_source},
                          {"kv_shared", l.is_kv_shared()},
                          {"has_v_proj", l.has_v_proj},
                          {"mlp_width", l.mlp_width},
                          {"rope", rope_json(l.rope)},
                          {"mlp_down_projection", a.mlp_down_projection(l.index).weight}};
    if (l.moe.num_experts > 0)
      row["moe"] = {{"experts", l.moe.num_experts}, {"top_k", l.moe.top_k}, {"expert_width", l.moe.expert_width}};
    layers.push_back(row);
  }
  return {{"model", dir},
          {"family", arch::family_name(s.family)},
          {"model_type", s.model_type},
          {"dtype", s.dtype},
          {"parameters", a.parameter_count()},
          {"num_layers", a.num_layers()},
          {"hidden_size", s.hidden_size},
          {"vocab_size", s.vocab_size},
          {"per_layer_input_size", s.per_layer_input_size},
          {"final_logit_softcap", s.final_logit_softcap},
          {"tie_word_embeddings", s.tie_word_embeddings},
          {"layers", layers}};
}

std::string weights_summary(const std::string& dir) {
  try {
    const auto checkpoint = io::Checkpoint::open(dir);
    size_t bytes = 0;
    for (const auto& f : checkpoint.files())
      for (const auto& name : f.names()) bytes += f.get(name).nbytes;
    return std::to_string(checkpoint.names().size()) + " tensors in " + std::to_string(checkpoint.files().size()) +
           " file(s), " + std::to_string(bytes / (1024 * 1024)) + " MiB";
  } catch (const std::exception& e) {
    return std::string("not loaded (") + e.what() + ")";
  }
}

void print_table(const arch::Architecture& a, const std::string& dir) {
  const auto& s = a.spec();
  std::printf("model        %s\n", dir.c_str());
  std::printf("family       %s (model_type %s)\n", arch::family_name(s.family), s.model_type.c_str());
  std::printf("dtype        %s\n", s.dtype.empty() ? "(not declared)" : s.dtype.c_str());
  std::printf("parameters   %lld\n", static_cast<long long>(a.parameter_count()));
  std::printf("weights      %s\n", weights_summary(dir).c_str());
  std::printf("layers       %d   hidden %lld   vocab %lld%s\n", a.num_layers(), static_cast<long long>(s.hidden_size),
              static_cast<long long>(s.vocab_size), a.has_per_layer_embeddings() ? "   per-layer embeddings" : "");
  std::printf("\n%5s  %-9s %6s %8s %7s %8s %9s %6s %9s\n", "layer", "attention", "window", "head_dim", "q_heads",
              "kv_heads", "kv_source", "v_proj", "mlp_width");
  for (const auto& l : s.layers) {
    std::printf("%5d  %-9s %6lld %8lld %7lld %8lld %9d %6s %9lld%s\n", l.index, l.is_sliding() ? "sliding" : "full",
                static_cast<long long>(l.sliding_window), static_cast<long long>(l.head_dim),
                static_cast<long long>(l.num_q_heads), static_cast<long long>(l.num_kv_heads), l.kv_source,
                l.has_v_proj ? "yes" : (l.is_kv_shared() ? "shared" : "k=v"), static_cast<long long>(l.mlp_width),
                l.moe.num_experts > 0 ? (" + " + std::to_string(l.moe.num_experts) + " experts (top " +
                                         std::to_string(l.moe.top_k) + ") of " + std::to_string(l.moe.expert_width))
                                            .c_str()
                                      : "");
  }
}

}  // namespace

Runner add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, per layer, from its config.json");
  auto dir = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("MODEL_DIR", *dir, "Model directory (config.json; weights optional)")->required();
  cmd->add_flag("--json", *as_json, "Print JSON instead of a table");
  return [dir, as_json]() {
    const auto a = arch::Architecture::from_model_dir(*dir);
    if (*as_json) std::printf("%s\n", info_json(*a, *dir).dump(2).c_str());
    else print_table(*a, *dir);
    return 0;
  };
}

}  // namespace graft::cli
