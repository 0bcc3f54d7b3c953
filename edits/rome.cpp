#include "edits/rome.h"

#include <ATen/core/grad_mode.h>

#include <map>

#include "core/error.h"
#include "core/model.h"
#include "core/timing.h"
#include "edits/activations.h"
#include "edits/solve.h"
#include "edits/weight_update.h"

namespace graft::edits {
namespace {

// Keys (input of the down projection) and values (its output) at the fact tokens, float64 on the
// CPU: [P, C, I] and [P, C, H].
struct FactActivations {
  std::vector<FactTokens> tokens;
  at::Tensor keys, values;
  at::Tensor key_mean() const { return keys.mean(1); }  // [P, I]
};

FactActivations read_fact_activations(const Model& model, const EditRequest& request,
                                      const std::vector<std::string>& contexts, const RomeOptions& options) {
  FactActivations out;
  out.tokens = {choose_fact_tokens(model, request, options.fact_token, contexts, options.layer, options.seed,
                                   options.traced_tokens)};
  const auto captured = subject_activations(
      model, {request}, contexts,
      {HookName{HookPoint::MlpPost, options.layer}, HookName{HookPoint::MlpDown, options.layer}}, out.tokens);
  out.keys = captured[0].to(at::kDouble).cpu();
  out.values = captured[1].to(at::kDouble).cpu();
  return out;
}

// The smallest change of W (in the metric of C) that maps each constraint key to its target:
// dW = L U^T with U = C^-1 K (the directions, from the context-averaged keys) and L (U^T K_c) = R^T,
// i.e. L^T = G^-1 R with G = K_c^T U (G[i][j] = k_i . u_j).
// One fact token: ROME's rank-1 formula (v* - W k) (C^-1 k)^T / (k^T C^-1 k).
// So dW = R^T B^T with B = U G^-1: constraint key i reads row i of R exactly (K_c B = I), any
// other key k reads (k . B) R. B does not depend on the values, so it comes first: the optional
// leakage term and the optimisation through the update need it.
struct RomeSystem {
  SolveReport report;
  at::Tensor directions;  // U [I, P]
  at::Tensor current;     // [P, H] what the constraint keys give now
  at::Tensor gram;        // G [P, P]
  at::Tensor key_map;     // B = U G^-1 [I, P]
};

RomeSystem solve_system(const FactActivations& fact, const KeyStatistics& stats, const RomeOptions& options) {
  RomeSystem s;
  const at::Tensor key_mean = fact.key_mean();
  if (options.covariance_adjustment) {
    const SymmetricSolver& solver = stats.second_moment_solver(options.layer);
    s.directions = solver.solve(key_mean.t());
    s.report = solver.report();
  } else {
    s.directions = key_mean.t().clone();
  }
  const at::Tensor constraint_keys = options.consistent_keys ? key_mean : fact.keys.select(1, 0);  // [P, I]
  s.current = options.consistent_keys ? fact.values.mean(1) : fact.values.select(1, 0);
  s.gram = at::matmul(constraint_keys, s.directions);
  const at::Tensor singular_values = at::linalg_svdvals(s.gram);
  if (!(singular_values.min().item<double>() > 1e-12 * singular_values.max().item<double>()))
    throw Error("ROME: the keys are (nearly) orthogonal to C^-1 k or dependent; refusing a degenerate update");
  s.key_map = at::linalg_solve(s.gram.t(), s.directions.t()).t();
  return s;
}

// ||dW||_C^2 / tr(W C W^T) = sum_ij (B^T C B)_ij r_i . r_j / power: the update's expected squared
// change of the MLP output over the statistics' tokens, relative to the output. With the bare
// prompt's keys, or values optimised through the update, R is exactly the optimised change;
// otherwise, with context-averaged keys, R also holds the bare prompt's offset from the average,
// which the term leaves out.
ValueOptions value_options_for(const RomeOptions& options, const RomeSystem& system, const at::Tensor& second_moment,
                               double power) {
  ValueOptions value = options.value;
  value.point = HookName{HookPoint::MlpDown, options.layer};
  if (value.leakage_weight > 0) value.leakage_metric = key_spread(second_moment, system.key_map) / power;
  if (options.through_update) value.through_update.push_back({options.layer, system.key_map.to(at::kFloat), 1.0});
  return value;
}

// The rank-P update in unit directions, as ROME stores u: dW = (L D)(U D^-1)^T with D the
// directions' norms. The change each constraint key must make: through the update, the optimised
// vectors themselves; otherwise the optimised output less what the constraint keys give now.
TensorUpdate make_update(const Model& model, const RomeSystem& system, const OptimizedValues& optimized,
                         const RomeOptions& options) {
  const at::Tensor change = options.through_update ? optimized.delta.to(at::kDouble)
                                                   : optimized.target().to(at::kDouble) - system.current;  // [P, H]
  const at::Tensor left = at::linalg_solve(system.gram, change).t();                                       // [H, P]
  if (!at::isfinite(left).all().item<bool>()) throw Error("ROME: the update is not finite; refusing the edit");
  TensorUpdate update;
  update.tensor = model.arch().mlp_down_projection(options.layer).weight;
  update.layer = options.layer;
  const at::Tensor direction_norms = system.directions.norm(2, 0, true);             // [1, P]
  update.left = (left * direction_norms).to(at::kFloat).contiguous();                // [H, P]
  update.right = (system.directions / direction_norms).to(at::kFloat).contiguous();  // [I, P]
  return update;
}

nlohmann::json hyperparameters(const RomeOptions& options, const KeyStatistics& stats) {
  nlohmann::json out = to_json(options);
  out["method"] = "rome";
  out["statistics_tokens"] = stats.tokens();
  return out;
}

void check_rome_options(const Model& model, const KeyStatistics& stats, const RomeOptions& options) {
  check_editor_options(options);
  if (options.layer < 0 || options.layer >= model.arch().num_layers())
    throw InputError("--layers: ROME needs one layer in [0, " + std::to_string(model.arch().num_layers()) + ")");
  if (!stats.has_layer(options.layer)) stats.second_moment(options.layer);  // the error naming the layer
}

}  // namespace

nlohmann::json to_json(const RomeOptions& options) {
  nlohmann::json out = {{"layer", options.layer},
                        {"covariance_adjustment", options.covariance_adjustment},
                        {"consistent_keys", options.consistent_keys},
                        {"through_update", options.through_update}};
  add_shared_hyperparameters(options, out);
  return out;
}

RomeOptions::RomeOptions() {
  templates = {{5, 10}, {10, 10}};
  value.point = HookName{HookPoint::MlpDown, -1};  // the value optimisation keeps ValueOptions' defaults: ROME's
}

EditOutcome rome(const Model& model, const EditRequest& request, const KeyStatistics& stats,
                 const RomeOptions& options) {
  check_rome_options(model, stats, options);
  const auto clock = std::chrono::steady_clock::now();
  const std::vector<std::string> contexts = context_templates(model, options.templates, options.seed);
  const double seconds_templates = seconds_since(clock);
  EditOutcome out = rome(model, request, stats, options, contexts);
  out.seconds_templates = seconds_templates;
  return out;
}

EditOutcome rome(const Model& model, const EditRequest& request, const KeyStatistics& stats, const RomeOptions& options,
                 const std::vector<std::string>& contexts) {
  check_rome_options(model, stats, options);
  const int layer = options.layer;
  const at::Tensor second_moment = stats.second_moment(layer);
  EditOutcome out;
  auto clock = std::chrono::steady_clock::now();
  const FactActivations fact = read_fact_activations(model, request, contexts, options);
  out.seconds_keys = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  const RomeSystem system = solve_system(fact, stats, options);
  out.seconds_solve = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  const double power = mlp_output_power(model, layer, second_moment);
  const OptimizedValues optimized = optimize_values(model, {request}, contexts,
                                                    value_options_for(options, system, second_moment, power),
                                                    fact.tokens);
  out.seconds_values = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  const TensorUpdate update = make_update(model, system, optimized, options);
  out.seconds_solve += seconds_since(clock);
  out.updates.push_back(update);

  out.hyperparameters = hyperparameters(options, stats);
  out.diagnostics = {{"layer", layer},
                     {"fact_tokens_from_end", fact.tokens[0].from_end},
                     {"mlp_width", model.arch().intermediate_size_for_layer(layer)},
                     {"condition", system.report.condition},
                     {"ridge", system.report.ridge},
                     {"contexts", contexts.size()},
                     {"final_loss", optimized.loss[0]},
                     {"target_probability", optimized.target_prob[0]},
                     {"optimizer_steps", optimized.steps[0]},
                     {"delta_norm", optimized.delta.norm().item<double>()},
                     {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()},
                     {"expected_leakage",
                      expected_leakage(update.left, key_spread(second_moment, update.right), power)}};
  return out;
}

EditOutcome rome_sequential(Model& model, const std::vector<EditRequest>& requests, const KeyStatistics& stats,
                            const RomeOptions& options) {
  if (requests.empty()) throw InputError("rome: no requests");
  EditOutcome total;
  total.diagnostics = nlohmann::json::array();
  std::map<std::string, TensorUpdate> merged;
  {
    TemporaryUpdates applied(model);  // each request sees the earlier ones; restored at the end
    for (const auto& request : requests) {
      EditOutcome one = rome(model, request, stats, options);
      for (auto& update : one.updates) {
        applied.add(update);
        auto it = merged.find(update.tensor);
        if (it == merged.end()) {
          merged.emplace(update.tensor, update);
        } else {
          it->second.left = at::cat({it->second.left, update.left}, 1);
          it->second.right = at::cat({it->second.right, update.right}, 1);
        }
      }
      total.hyperparameters = one.hyperparameters;
      total.diagnostics.push_back(one.diagnostics);
      total.seconds_templates += one.seconds_templates;
      total.seconds_keys += one.seconds_keys;
      total.seconds_values += one.seconds_values;
      total.seconds_solve += one.seconds_solve;
    }
  }
  for (auto& [name, update] : merged) total.updates.push_back(std::move(update));
  return total;
}

}  // namespace graft::edits
