#include "edits/memit.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/model.h"

namespace graft::edits {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<int> checked_layers(const Model& model, std::vector<int> layers) {
  if (layers.empty()) throw InputError("--layers: MEMIT needs the layers to edit (e.g. --layers 1,2,3)");
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  for (int l : layers)
    if (l < 0 || l >= model.arch().num_layers())
      throw InputError("--layers: layer " + std::to_string(l) + " out of range (the model has " +
                       std::to_string(model.arch().num_layers()) + ")");
  return layers;
}

// MEMIT's key per request: half the bare prompt's key, half the mean over the prefixed contexts
// (the reference code averages within each template type, then across types).
at::Tensor memit_keys(const Model& model, const std::vector<EditRequest>& requests, const std::vector<std::string>& contexts,
                      int layer, const std::vector<FactToken>& tokens) {
  const at::Tensor keys =
      subject_activations(model, requests, contexts, {HookName{HookPoint::MlpPost, layer}}, tokens)[0].to(at::kDouble);
  if (contexts.size() == 1) return keys.select(1, 0);
  return 0.5 * keys.select(1, 0) + 0.5 * keys.narrow(1, 1, keys.size(1) - 1).mean(1);  // [N, I]
}

}  // namespace

EditOutcome memit(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats, const MemitOptions& options) {
  const std::vector<int> layers = checked_layers(model, options.layers);
  for (int l : layers) stats.second_moment(l);  // fail early on a layer without statistics
  const int last = layers.back();
  EditOutcome out;
  auto clock = std::chrono::steady_clock::now();
  const std::vector<std::string> contexts = context_templates(model, options.templates, options.seed);
  out.seconds_templates = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  std::vector<FactToken> tokens;
  if (options.fact_token == FactTokenChoice::Traced)
    for (const auto& request : requests) tokens.push_back(traced_fact_token(model, request, layers.front(), options.seed));
  ValueOptions value_options = options.value;
  value_options.point = HookName{HookPoint::ResidPost, last};
  const OptimizedValues optimized = optimize_values(model, requests, contexts, value_options, tokens);
  const at::Tensor z_target = optimized.target().to(at::kDouble);  // [N, H]
  out.seconds_values = seconds_since(clock);

  // Layers are edited in place, in order, so each sees the earlier ones; the weights are restored
  // when `applied` goes out of scope.
  nlohmann::json layer_reports = nlohmann::json::array();
  {
    TemporaryUpdates applied(model);
    for (size_t i = 0; i < layers.size(); ++i) {
      const int layer = layers[i];
      clock = std::chrono::steady_clock::now();
      const at::Tensor keys = memit_keys(model, requests, contexts, layer, tokens);                      // [N, I]
      const at::Tensor current = subject_activations(model, requests, {"{}"}, {HookName{HookPoint::ResidPost, last}}, tokens)[0]
                                     .select(1, 0)
                                     .to(at::kDouble);                                          // [N, H]
      const at::Tensor residual = (z_target - current) / static_cast<double>(layers.size() - i);  // [N, H]
      out.seconds_keys += seconds_since(clock);

      clock = std::chrono::steady_clock::now();
      const at::Tensor system = options.covariance_weight * stats.second_moment(layer) + at::matmul(keys.t(), keys);
      SolveReport report;
      const at::Tensor adjusted = solve_symmetric(system, keys.t(), &report);  // [I, N]
      out.seconds_solve += seconds_since(clock);

      const auto& down = model.arch().mlp_down_projection(layer);
      TensorUpdate update;
      update.tensor = down.weight;
      update.layer = layer;
      update.left = residual.t().to(at::kFloat).contiguous();  // [H, N]
      update.right = adjusted.to(at::kFloat).contiguous();     // [I, N]
      applied.add(update);
      out.updates.push_back(update);
      layer_reports.push_back({{"layer", layer},
                               {"mlp_width", model.arch().intermediate_size_for_layer(layer)},
                               {"condition", report.condition},
                               {"ridge", report.ridge},
                               {"residual_norm", residual.norm().item<double>()},
                               {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()}});
    }
  }

  out.hyperparameters = {{"method", "memit"},
                         {"layers", layers},
                         {"value", to_json(options.value)},
                         {"templates", nlohmann::json::array()},
                         {"covariance_weight", options.covariance_weight},
                         {"fact_token", fact_token_name(options.fact_token)},
                         {"seed", options.seed},
                         {"statistics_tokens", stats.tokens()}};
  for (const auto& t : options.templates) out.hyperparameters["templates"].push_back({t.tokens, t.count});
  double mean_prob = 0;
  for (double p : optimized.target_prob) mean_prob += p / static_cast<double>(optimized.target_prob.size());
  out.diagnostics = {{"layers", layer_reports}, {"requests", requests.size()}, {"contexts", contexts.size()},
                     {"mean_target_probability_at_z", mean_prob}};
  return out;
}

}  // namespace graft::edits
