#include "edits/memit.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>

#include "core/error.h"
#include "core/model.h"
#include "core/timing.h"
#include "edits/activations.h"
#include "edits/layers.h"
#include "edits/solve.h"
#include "edits/weight_update.h"

namespace graft::edits {
namespace {

using Clock = std::chrono::steady_clock;

// The layers, checked: at least one, in range, and the range must end before the last layer.
std::vector<int> memit_layers(const Model& model, const std::vector<int>& requested) {
  if (requested.empty()) throw InputError("--layers: MEMIT needs the layers to edit (e.g. --layers 1,2,3)");
  const std::vector<int> layers = checked_layers(model, requested);
  const int last = layers.back();
  if (last == model.arch().num_layers() - 1)
    throw InputError("--layers: MEMIT's range ends at the model's last layer (" + std::to_string(last) +
                     "); no later layer reads the subject's position, so a change there cannot reach the answer. "
                     "End the range earlier (crown-scan shows where the fact lives)");
  return layers;
}

MemitTargets resolved_targets(const Model& model, const MemitOptions& options) {
  if (options.targets != MemitTargets::Auto) return options.targets;
  return model.spec().sandwich_norms ? MemitTargets::PerLayer : MemitTargets::ResidualSplit;
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

OptimizedValues optimize_at(const Model& model, const std::vector<EditRequest>& requests,
                            const std::vector<std::string>& contexts, const MemitOptions& options,
                            const std::vector<FactTokens>& tokens, const HookName& point) {
  ValueOptions value_options = options.value;
  value_options.point = point;
  return optimize_values(model, requests, contexts, value_options, tokens);
}

// ----- joint targets -----

// One layer's right factor (lambda C + K K^T)^-1 K from the unedited model's keys, and what the
// leakage term and the report need of it.
struct JointLayer {
  SolveReport report;
  at::Tensor key_map;  // [I, slots]
  at::Tensor spread;   // A^T C A [slots, slots]
  double power = 0;    // tr(W C W^T)
};

JointLayer joint_layer(const Model& model, int layer, const at::Tensor& keys, const KeyStatistics& stats,
                       const MemitOptions& options) {
  JointLayer out;
  const at::Tensor second_moment = stats.second_moment(layer);
  const at::Tensor system = options.covariance_weight * second_moment + at::matmul(keys.t(), keys);
  // Each column scaled so that its slot's own key reads 1 (k_j . a_j = 1): a vector is then the
  // change the update makes at its own slot, less what the other slots' columns add (slots of one
  // subject with the same key add theirs too), so the decay and the clamp keep roughly their
  // published meaning and lambda mostly shapes the directions.
  out.key_map = solve_symmetric(system, keys.t(), &out.report);
  out.key_map = out.key_map / (keys * out.key_map.t()).sum(1).unsqueeze(0);
  if (!at::isfinite(out.key_map).all().item<bool>())
    throw Error("MEMIT: layer " + std::to_string(layer) + "'s update directions are not finite; refusing the edit");
  out.power = mlp_output_power(model, layer, second_moment);
  out.spread = key_spread(second_moment, out.key_map);
  return out;
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
  auto clock = Clock::now();
  const std::vector<at::Tensor> layer_keys = memit_keys(model, requests, contexts, layers,
                                                        tokens);  // all from the unedited model
  out.seconds_keys += seconds_since(clock);
  std::vector<JointLayer> solved;
  at::Tensor leakage;  // [slots, slots] sum over layers of share^2 A^T C A / tr(W C W^T)
  for (size_t i = 0; i < layers.size(); ++i) {
    clock = Clock::now();
    solved.push_back(joint_layer(model, layers[i], layer_keys[i], stats, options));
    if (value_options.leakage_weight > 0) {
      const at::Tensor term = solved.back().spread * (share * share / solved.back().power);
      leakage = leakage.defined() ? leakage + term : term;
    }
    value_options.through_update.push_back({layers[i], solved.back().key_map.to(at::kFloat), share});
    out.seconds_solve += seconds_since(clock);
  }
  if (leakage.defined()) value_options.leakage_metric = leakage;

  clock = Clock::now();
  const OptimizedValues optimized = optimize_values(model, requests, contexts, value_options, tokens);
  out.seconds_values += seconds_since(clock);

  nlohmann::json reports = nlohmann::json::array();
  const at::Tensor left = (optimized.delta.t() * share).contiguous();  // [H, slots]
  for (size_t i = 0; i < layers.size(); ++i) {
    TensorUpdate update;
    update.tensor = model.arch().mlp_down_projection(layers[i]).weight;
    update.layer = layers[i];
    update.left = left;
    update.right = value_options.through_update[i].key_map.contiguous();
    if (!at::isfinite(update.left).all().item<bool>())
      throw Error("MEMIT: layer " + std::to_string(layers[i]) + "'s update is not finite; refusing the edit");
    reports.push_back({{"layer", layers[i]},
                       {"mlp_width", model.arch().intermediate_size_for_layer(layers[i])},
                       {"condition", solved[i].report.condition},
                       {"ridge", solved[i].report.ridge},
                       {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()},
                       {"expected_leakage", expected_leakage(update.left, solved[i].spread, solved[i].power)}});
    out.updates.push_back(std::move(update));
  }
  out.diagnostics["mean_target_probability"] = mean_probability(optimized);
  out.diagnostics["optimizer_steps"] = *std::max_element(optimized.steps.begin(), optimized.steps.end());
  return reports;
}

// ----- residual-split and per-layer targets -----

// The change layer `layers[i]`'s MLP output should make at every slot [slots, H], with the earlier
// layers' updates applied: its share of what remains to z* (residual split), or its share of v*
// re-optimised at its own MLP output (per-layer; the mean target probability in `probability`).
at::Tensor layer_residual(const Model& model, const std::vector<EditRequest>& requests,
                          const std::vector<std::string>& contexts, const MemitOptions& options,
                          const std::vector<FactTokens>& tokens, const std::vector<int>& layers, size_t i,
                          const at::Tensor& z_target, double* probability, EditOutcome& out) {
  const double share = 1.0 / static_cast<double>(layers.size() - i);
  const auto clock = Clock::now();
  if (z_target.defined()) {
    const at::Tensor current = subject_activations(model, requests, {"{}"},
                                                   {HookName{HookPoint::ResidPost, layers.back()}}, tokens)[0]
                                   .select(1, 0)
                                   .to(at::kDouble)
                                   .cpu();
    out.seconds_keys += seconds_since(clock);
    return (z_target - current) * share;
  }
  const OptimizedValues optimized = optimize_at(model, requests, contexts, options, tokens,
                                                HookName{HookPoint::MlpDown, layers[i]});
  *probability = mean_probability(optimized);
  out.seconds_values += seconds_since(clock);
  return optimized.delta.to(at::kDouble) * share;
}

// Layers are edited in place, in order, so each sees the earlier ones; the weights are restored
// when `applied` goes out of scope. Fills `out` and returns the per-layer reports.
nlohmann::json layer_by_layer_updates(Model& model, const std::vector<EditRequest>& requests,
                                      const KeyStatistics& stats, const MemitOptions& options,
                                      const std::vector<int>& layers, const std::vector<std::string>& contexts,
                                      const std::vector<FactTokens>& tokens, const at::Tensor& z_target,
                                      EditOutcome& out) {
  nlohmann::json reports = nlohmann::json::array();
  TemporaryUpdates applied(model);
  for (size_t i = 0; i < layers.size(); ++i) {
    const int layer = layers[i];
    double probability = 0;
    const at::Tensor residual = layer_residual(model, requests, contexts, options, tokens, layers, i, z_target,
                                               &probability, out);
    auto clock = Clock::now();
    const at::Tensor keys = memit_keys(model, requests, contexts, {layer},
                                       tokens)[0];  // [slots, I], earlier layers edited
    out.seconds_keys += seconds_since(clock);

    clock = Clock::now();
    const at::Tensor system = options.covariance_weight * stats.second_moment(layer) + at::matmul(keys.t(), keys);
    SolveReport report;
    const at::Tensor adjusted = solve_symmetric(system, keys.t(), &report);  // [I, slots]
    out.seconds_solve += seconds_since(clock);

    TensorUpdate update;
    update.tensor = model.arch().mlp_down_projection(layer).weight;
    update.layer = layer;
    update.left = residual.t().to(at::kFloat).contiguous();  // [H, slots]
    update.right = adjusted.to(at::kFloat).contiguous();     // [I, slots]
    applied.add(update);
    out.updates.push_back(update);
    nlohmann::json row = {{"layer", layer},
                          {"mlp_width", model.arch().intermediate_size_for_layer(layer)},
                          {"condition", report.condition},
                          {"ridge", report.ridge},
                          {"residual_norm", residual.norm().item<double>()},
                          {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()}};
    if (!z_target.defined()) row["mean_target_probability"] = probability;
    reports.push_back(row);
  }
  return reports;
}

nlohmann::json hyperparameters(const MemitOptions& options, const std::vector<int>& layers, MemitTargets targets,
                               const KeyStatistics& stats) {
  nlohmann::json out = to_json(options);
  out["method"] = "memit";
  out["layers"] = layers;
  out["targets"] = memit_targets_name(targets);
  out["statistics_tokens"] = stats.tokens();
  return out;
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

nlohmann::json to_json(const MemitOptions& options) {
  nlohmann::json out = {{"layers", options.layers},
                        {"covariance_weight", options.covariance_weight},
                        {"targets", memit_targets_name(options.targets)}};
  add_shared_hyperparameters(options, out);
  return out;
}

MemitOptions::MemitOptions() {
  templates = {{10, 5}};
  value.point = HookName{HookPoint::ResidPost, -1};
  value.steps = 25;  // the rest of the value optimisation as ROME's (ValueOptions' defaults)
  value.clamp_norm_factor = 0.75;
}

EditOutcome memit(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                  const MemitOptions& options) {
  if (requests.empty()) throw InputError("memit: no requests");
  check_editor_options(options);
  if (!(options.covariance_weight > 0)) throw InputError("--lambda / covariance_weight: must be positive");
  const std::vector<int> layers = memit_layers(model, options.layers);
  for (int l : layers) stats.second_moment(l);  // fail early on a layer without statistics
  const MemitTargets targets = resolved_targets(model, options);
  // Only joint values know the update they make; the others are fixed before the solve.
  if (options.value.leakage_weight > 0 && targets != MemitTargets::Joint)
    throw InputError("--leakage-weight: MEMIT takes it only with joint targets (--memit-targets joint); the " +
                     std::string(memit_targets_name(targets)) + " targets are optimised before the solve");
  EditOutcome out;
  auto clock = Clock::now();
  const std::vector<std::string> contexts = context_templates(model, options.templates, options.seed);
  out.seconds_templates = seconds_since(clock);

  clock = Clock::now();
  std::vector<FactTokens> tokens;
  for (const auto& request : requests)
    tokens.push_back(choose_fact_tokens(model, request, options.fact_token, contexts, layers.front(), options.seed,
                                        options.traced_tokens));
  at::Tensor z_target;  // ResidualSplit: [slots, H] the wanted residual after the last layer
  double z_probability = 0;
  if (targets == MemitTargets::ResidualSplit) {
    const OptimizedValues optimized = optimize_at(model, requests, contexts, options, tokens,
                                                  HookName{HookPoint::ResidPost, layers.back()});
    z_target = optimized.target().to(at::kDouble);
    z_probability = mean_probability(optimized);
  }
  out.seconds_values = seconds_since(clock);

  out.diagnostics["layers"] = targets == MemitTargets::Joint
                                  ? joint_updates(model, requests, stats, options, layers, contexts, tokens, out)
                                  : layer_by_layer_updates(model, requests, stats, options, layers, contexts, tokens,
                                                           z_target, out);
  out.hyperparameters = hyperparameters(options, layers, targets, stats);
  out.diagnostics["requests"] = requests.size();
  out.diagnostics["slots"] = out.updates.front().left.size(1);
  out.diagnostics["contexts"] = contexts.size();
  if (targets == MemitTargets::ResidualSplit) out.diagnostics["mean_target_probability_at_z"] = z_probability;
  return out;
}

}  // namespace graft::edits
