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

// MEMIT's key per request at each of `layers` (one forward pass): half the bare prompt's key, half
// the mean over the prefixed contexts (the reference code averages within each template type, then
// across types). [slots, I] per layer, float64 on the CPU beside the statistics.
std::vector<at::Tensor> memit_keys(const Model& model, const std::vector<EditRequest>& requests,
                                   const std::vector<std::string>& contexts, const std::vector<int>& layers,
                                   const std::vector<FactTokens>& tokens) {
  std::vector<HookName> points;
  for (int layer : layers) points.push_back(HookName{HookPoint::MlpPost, layer});
  std::vector<at::Tensor> out;
  for (const at::Tensor& captured : subject_activations(model, requests, contexts, points, tokens)) {
    const at::Tensor keys = captured.to(at::kDouble).cpu();
    out.push_back(contexts.size() == 1 ? keys.select(1, 0)
                                       : 0.5 * keys.select(1, 0) + 0.5 * keys.narrow(1, 1, keys.size(1) - 1).mean(1));
  }
  return out;
}

double mean_probability(const OptimizedValues& values) {
  double mean = 0;
  for (double p : values.target_prob) mean += p / static_cast<double>(values.target_prob.size());
  return mean;
}

// MemitTargets::Joint: fills `out` with one update per layer and returns the per-layer reports.
nlohmann::json joint_updates(const Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                             const MemitOptions& options, const std::vector<int>& layers,
                             const std::vector<std::string>& contexts, const std::vector<FactTokens>& tokens,
                             EditOutcome& out) {
  const double share = 1.0 / static_cast<double>(layers.size());
  ValueOptions value_options = options.value;
  // The decay and clamp measure each vector against the last layer's MLP output at its slot.
  value_options.point = HookName{HookPoint::MlpDown, layers.back()};
  std::vector<SolveReport> reports(layers.size());
  std::vector<double> powers(layers.size(), 0);
  std::vector<at::Tensor> spreads(layers.size());  // A^T C A per layer [slots, slots]
  at::Tensor leakage;  // [slots, slots] sum over layers of share^2 A^T C A / tr(W C W^T)
  auto clock = std::chrono::steady_clock::now();
  const std::vector<at::Tensor> layer_keys = memit_keys(model, requests, contexts, layers, tokens);  // all from the unedited model
  out.seconds_keys += seconds_since(clock);
  for (size_t i = 0; i < layers.size(); ++i) {
    const int layer = layers[i];
    const at::Tensor& keys = layer_keys[i];  // [slots, I]
    clock = std::chrono::steady_clock::now();
    const at::Tensor second_moment = stats.second_moment(layer);
    const at::Tensor system = options.covariance_weight * second_moment + at::matmul(keys.t(), keys);
    // Each column scaled so that its slot's own key reads 1 (k_j . a_j = 1): a vector is then the
    // change the update makes at its own slot, less what the other slots' columns add (slots of one
    // subject with the same key add theirs too), so the decay and the clamp keep roughly their
    // published meaning and lambda mostly shapes the directions.
    at::Tensor key_map = solve_symmetric(system, keys.t(), &reports[i]);  // [I, slots]
    key_map = key_map / (keys * key_map.t()).sum(1).unsqueeze(0);
    if (!at::isfinite(key_map).all().item<bool>())
      throw Error("MEMIT: layer " + std::to_string(layer) + "'s update directions are not finite; refusing the edit");
    powers[i] = mlp_output_power(model, layer, second_moment);
    spreads[i] = key_spread(second_moment, key_map);
    if (value_options.leakage_weight > 0) {
      const at::Tensor term = spreads[i] * (share * share / powers[i]);
      leakage = leakage.defined() ? leakage + term : term;
    }
    value_options.through_update.push_back({layer, key_map.to(at::kFloat), share});
    out.seconds_solve += seconds_since(clock);
  }
  if (leakage.defined()) value_options.leakage_metric = leakage;

  clock = std::chrono::steady_clock::now();
  const OptimizedValues optimized = optimize_values(model, requests, contexts, value_options, tokens);
  out.seconds_values += seconds_since(clock);

  nlohmann::json reports_json = nlohmann::json::array();
  const at::Tensor left = (optimized.delta.t() * share).contiguous();  // [H, slots]
  for (size_t i = 0; i < layers.size(); ++i) {
    const int layer = layers[i];
    TensorUpdate update;
    update.tensor = model.arch().mlp_down_projection(layer).weight;
    update.layer = layer;
    update.left = left;
    update.right = value_options.through_update[i].key_map.contiguous();
    if (!at::isfinite(update.left).all().item<bool>())
      throw Error("MEMIT: layer " + std::to_string(layer) + "'s update is not finite; refusing the edit");
    reports_json.push_back({{"layer", layer},
                            {"mlp_width", model.arch().intermediate_size_for_layer(layer)},
                            {"condition", reports[i].condition},
                            {"ridge", reports[i].ridge},
                            {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()},
                            {"expected_leakage", expected_leakage(update.left, spreads[i], powers[i])}});
    out.updates.push_back(std::move(update));
  }
  out.diagnostics["mean_target_probability"] = mean_probability(optimized);
  int64_t steps = 0;
  for (int64_t s : optimized.steps) steps = std::max(steps, s);
  out.diagnostics["optimizer_steps"] = steps;
  return reports_json;
}

}  // namespace

MemitTargets parse_memit_targets(const std::string& name) {
  if (name == "auto") return MemitTargets::Auto;
  if (name == "residual") return MemitTargets::ResidualSplit;
  if (name == "per-layer") return MemitTargets::PerLayer;
  if (name == "joint") return MemitTargets::Joint;
  throw InputError("--memit-targets \"" + name + "\": use auto, residual, per-layer or joint");
}

const char* memit_targets_name(MemitTargets targets) {
  switch (targets) {
    case MemitTargets::Auto: return "auto";
    case MemitTargets::ResidualSplit: return "residual";
    case MemitTargets::PerLayer: return "per-layer";
    case MemitTargets::Joint: return "joint";
  }
  return "auto";
}

EditOutcome memit(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats, const MemitOptions& options) {
  const std::vector<int> layers = checked_layers(model, options.layers);
  const int last = layers.back();
  if (last == model.arch().num_layers() - 1)
    throw InputError("--layers: MEMIT's range ends at the model's last layer (" + std::to_string(last) +
                     "); no later layer reads the subject's position, so a change there cannot reach the answer. "
                     "End the range earlier (crown-scan shows where the fact lives)");
  for (int l : layers) stats.second_moment(l);  // fail early on a layer without statistics
  const MemitTargets targets = options.targets != MemitTargets::Auto ? options.targets
                               : model.spec().sandwich_norms        ? MemitTargets::PerLayer
                                                                    : MemitTargets::ResidualSplit;
  // Only joint values know the update they make; the others are fixed before the solve.
  if (options.value.leakage_weight > 0 && targets != MemitTargets::Joint)
    throw InputError("--leakage-weight: MEMIT takes it only with joint targets (--memit-targets joint); the " +
                     std::string(memit_targets_name(targets)) + " targets are optimised before the solve");
  EditOutcome out;
  auto clock = std::chrono::steady_clock::now();
  const std::vector<std::string> contexts = context_templates(model, options.templates, options.seed);
  out.seconds_templates = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  std::vector<FactTokens> tokens;
  for (const auto& request : requests)
    tokens.push_back(choose_fact_tokens(model, request, options.fact_token, contexts, layers.front(), options.seed, options.traced_tokens));
  auto optimize_at = [&](const HookName& point) {
    ValueOptions value_options = options.value;
    value_options.point = point;
    return optimize_values(model, requests, contexts, value_options, tokens);
  };
  at::Tensor z_target;  // ResidualSplit: [slots, H] the wanted residual after the last layer
  double z_probability = 0;
  if (targets == MemitTargets::ResidualSplit) {
    const OptimizedValues optimized = optimize_at(HookName{HookPoint::ResidPost, last});
    z_target = optimized.target().to(at::kDouble);
    z_probability = mean_probability(optimized);
  }
  out.seconds_values = seconds_since(clock);

  // Layers are edited in place, in order, so each sees the earlier ones; the weights are restored
  // when `applied` goes out of scope.
  nlohmann::json layer_reports = nlohmann::json::array();
  int64_t slots = 0;
  if (targets == MemitTargets::Joint) {
    layer_reports = joint_updates(model, requests, stats, options, layers, contexts, tokens, out);
    slots = out.updates.front().left.size(1);
  } else {
    TemporaryUpdates applied(model);
    for (size_t i = 0; i < layers.size(); ++i) {
      const int layer = layers[i];
      const double share = 1.0 / static_cast<double>(layers.size() - i);
      // The change this layer's MLP output should make at every slot.
      at::Tensor residual;  // [slots, H]
      double layer_probability = 0;
      if (targets == MemitTargets::ResidualSplit) {
        clock = std::chrono::steady_clock::now();
        const at::Tensor current = subject_activations(model, requests, {"{}"}, {HookName{HookPoint::ResidPost, last}}, tokens)[0]
                                       .select(1, 0)
                                       .to(at::kDouble)
                                       .cpu();
        residual = (z_target - current) * share;
        out.seconds_keys += seconds_since(clock);
      } else {
        clock = std::chrono::steady_clock::now();
        const OptimizedValues optimized = optimize_at(HookName{HookPoint::MlpDown, layer});
        residual = optimized.delta.to(at::kDouble) * share;
        layer_probability = mean_probability(optimized);
        out.seconds_values += seconds_since(clock);
      }
      slots = residual.size(0);
      clock = std::chrono::steady_clock::now();
      const at::Tensor keys = memit_keys(model, requests, contexts, {layer}, tokens)[0];  // [slots, I], earlier layers edited
      out.seconds_keys += seconds_since(clock);

      clock = std::chrono::steady_clock::now();
      const at::Tensor system = options.covariance_weight * stats.second_moment(layer) + at::matmul(keys.t(), keys);
      SolveReport report;
      const at::Tensor adjusted = solve_symmetric(system, keys.t(), &report);  // [I, slots]
      out.seconds_solve += seconds_since(clock);

      const auto& down = model.arch().mlp_down_projection(layer);
      TensorUpdate update;
      update.tensor = down.weight;
      update.layer = layer;
      update.left = residual.t().to(at::kFloat).contiguous();  // [H, slots]
      update.right = adjusted.to(at::kFloat).contiguous();     // [I, slots]
      applied.add(update);
      out.updates.push_back(update);
      nlohmann::json report_json = {{"layer", layer},
                                    {"mlp_width", model.arch().intermediate_size_for_layer(layer)},
                                    {"condition", report.condition},
                                    {"ridge", report.ridge},
                                    {"residual_norm", residual.norm().item<double>()},
                                    {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()}};
      if (targets == MemitTargets::PerLayer) report_json["mean_target_probability"] = layer_probability;
      layer_reports.push_back(report_json);
    }
  }

  out.hyperparameters = {{"method", "memit"},
                         {"layers", layers},
                         {"value", to_json(options.value)},
                         {"templates", nlohmann::json::array()},
                         {"covariance_weight", options.covariance_weight},
                         {"fact_token", fact_token_name(options.fact_token)},
                         {"traced_tokens", options.traced_tokens},
                         {"targets", memit_targets_name(targets)},
                         {"seed", options.seed},
                         {"statistics_tokens", stats.tokens()}};
  for (const auto& t : options.templates) out.hyperparameters["templates"].push_back({t.tokens, t.count});
  out.diagnostics["layers"] = layer_reports;
  out.diagnostics["requests"] = requests.size();
  out.diagnostics["slots"] = slots;
  out.diagnostics["contexts"] = contexts.size();
  if (targets == MemitTargets::ResidualSplit) out.diagnostics["mean_target_probability_at_z"] = z_probability;
  return out;
}

}  // namespace graft::edits
