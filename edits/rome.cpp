#include "edits/rome.h"

#include <ATen/core/grad_mode.h>

#include <chrono>
#include <map>

#include "core/error.h"
#include "core/model.h"

namespace graft::edits {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

nlohmann::json to_json(const ValueOptions& o) {
  return {{"steps", o.steps},       {"learning_rate", o.learning_rate},         {"weight_decay", o.weight_decay},
          {"kl_factor", o.kl_factor}, {"clamp_norm_factor", o.clamp_norm_factor}, {"stop_loss", o.stop_loss},
          {"bare_prompt_weight", o.bare_prompt_weight}, {"leakage_weight", o.leakage_weight}};
}

EditOutcome rome(const Model& model, const EditRequest& request, const KeyStatistics& stats, const RomeOptions& options) {
  const int layer = options.layer;
  if (layer < 0 || layer >= model.arch().num_layers())
    throw InputError("--layers: ROME needs one layer in [0, " + std::to_string(model.arch().num_layers()) + ")");
  const at::Tensor second_moment = stats.second_moment(layer);  // checks the layer was collected
  EditOutcome out;
  auto clock = std::chrono::steady_clock::now();
  const std::vector<std::string> contexts = context_templates(model, options.templates, options.seed);
  out.seconds_templates = seconds_since(clock);

  // Keys (input of the down projection) and values (its output) at the fact tokens.
  clock = std::chrono::steady_clock::now();
  const std::vector<FactTokens> tokens{choose_fact_tokens(model, request, options.fact_token, contexts, layer, options.seed, options.traced_tokens)};
  const auto captured = subject_activations(model, {request}, contexts,
                                            {HookName{HookPoint::MlpPost, layer}, HookName{HookPoint::MlpDown, layer}}, tokens);
  const at::Tensor keys = captured[0].to(at::kDouble).cpu(), values = captured[1].to(at::kDouble).cpu();  // [P, C, I], [P, C, H]
  const at::Tensor key_mean = keys.mean(1);                                                   // [P, I]
  out.seconds_keys = seconds_since(clock);

  // The smallest change of W (in the metric of C) that maps each constraint key to its target:
  // dW = L U^T with U = C^-1 K (the directions, from the context-averaged keys) and L (U^T K_c) = R^T,
  // i.e. L^T = G^-1 R with G = K_c^T U (G[i][j] = k_i . u_j).
  // One fact token: ROME's rank-1 formula (v* - W k) (C^-1 k)^T / (k^T C^-1 k).
  // So dW = R^T B^T with B = U G^-1: constraint key i reads row i of R exactly (K_c B = I), any
  // other key k reads (k . B) R. B does not depend on the values, so it comes first: the optional
  // leakage term and the optimisation through the update need it.
  clock = std::chrono::steady_clock::now();
  SolveReport report;
  const at::Tensor directions =
      options.covariance_adjustment ? solve_symmetric(second_moment, key_mean.t(), &report) : key_mean.t().clone();  // [I, P]
  const at::Tensor constraint_keys = options.consistent_keys ? key_mean : keys.select(1, 0);                      // [P, I]
  const at::Tensor current = options.consistent_keys ? values.mean(1) : values.select(1, 0);                      // [P, H]
  const at::Tensor gram = at::matmul(constraint_keys, directions);                                                // [P, P]
  const at::Tensor singular_values = at::linalg_svdvals(gram);
  if (!(singular_values.min().item<double>() > 1e-12 * singular_values.max().item<double>()))
    throw Error("ROME: the keys are (nearly) orthogonal to C^-1 k or dependent; refusing a degenerate update");
  const at::Tensor key_map = at::linalg_solve(gram.t(), directions.t()).t();  // B = U G^-1, [I, P]
  out.seconds_solve = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  ValueOptions value_options = options.value;
  value_options.point = HookName{HookPoint::MlpDown, layer};
  const double power = mlp_output_power(model, layer, second_moment);
  // ||dW||_C^2 / tr(W C W^T) = sum_ij (B^T C B)_ij r_i . r_j / power: the update's expected squared
  // change of the MLP output over the statistics' tokens, relative to the output. With the bare
  // prompt's keys, or values optimised through the update, R is exactly the optimised change;
  // otherwise, with context-averaged keys, R also holds the bare prompt's offset from the average,
  // which the term leaves out.
  if (value_options.leakage_weight > 0) value_options.leakage_metric = key_spread(second_moment, key_map) / power;
  if (options.through_update) value_options.through_update.push_back({layer, key_map.to(at::kFloat), 1.0});
  const OptimizedValues optimized = optimize_values(model, {request}, contexts, value_options, tokens);
  out.seconds_values = seconds_since(clock);

  clock = std::chrono::steady_clock::now();
  // The change each constraint key must make: through the update, the optimised vectors themselves;
  // otherwise the optimised output less what the constraint keys give now.
  const at::Tensor change = options.through_update ? optimized.delta.to(at::kDouble)
                                                   : optimized.target().to(at::kDouble) - current;  // [P, H]
  const at::Tensor left = at::linalg_solve(gram, change).t();  // [H, P]
  if (!at::isfinite(left).all().item<bool>()) throw Error("ROME: the update is not finite; refusing the edit");
  out.seconds_solve += seconds_since(clock);

  const auto& down = model.arch().mlp_down_projection(layer);
  TensorUpdate update;
  update.tensor = down.weight;
  update.layer = layer;
  // Unit directions, as ROME stores u: dW = (L D)(U D^-1)^T with D the directions' norms.
  const at::Tensor direction_norms = directions.norm(2, 0, true);                  // [1, P]
  update.left = (left * direction_norms).to(at::kFloat).contiguous();              // [H, P]
  update.right = (directions / direction_norms).to(at::kFloat).contiguous();       // [I, P]
  out.updates.push_back(update);

  out.hyperparameters = {{"method", "rome"},
                         {"layer", layer},
                         {"value", to_json(options.value)},
                         {"templates", nlohmann::json::array()},
                         {"covariance_adjustment", options.covariance_adjustment},
                         {"consistent_keys", options.consistent_keys},
                         {"through_update", options.through_update},
                         {"fact_token", fact_token_name(options.fact_token)},
                         {"traced_tokens", options.traced_tokens},
                         {"seed", options.seed},
                         {"statistics_tokens", stats.tokens()}};
  for (const auto& t : options.templates) out.hyperparameters["templates"].push_back({t.tokens, t.count});
  out.diagnostics = {{"layer", layer},
                     {"fact_tokens_from_end", tokens[0].from_end},
                     {"mlp_width", model.arch().intermediate_size_for_layer(layer)},
                     {"condition", report.condition},
                     {"ridge", report.ridge},
                     {"contexts", contexts.size()},
                     {"final_loss", optimized.loss[0]},
                     {"target_probability", optimized.target_prob[0]},
                     {"optimizer_steps", optimized.steps[0]},
                     {"delta_norm", optimized.delta.norm().item<double>()},
                     {"update_norm", at::matmul(update.left, update.right.t()).norm().item<double>()},
                     {"expected_leakage", expected_leakage(update.left, key_spread(second_moment, update.right), power)}};
  return out;
}

}  // namespace graft::edits

namespace graft::edits {

Patch make_patch(const Model& model, EditOutcome outcome, const std::string& method, const std::vector<EditRequest>& requests) {
  PatchProvenance provenance;
  provenance.method = method;
  provenance.hyperparameters = outcome.hyperparameters;
  for (const auto& r : requests) provenance.requests.push_back(request_to_json(r));
  provenance.notes = {{"diagnostics", outcome.diagnostics},
                      {"seconds",
                       {{"templates", outcome.seconds_templates},
                        {"keys", outcome.seconds_keys},
                        {"values", outcome.seconds_values},
                        {"solve", outcome.seconds_solve}}}};
  return Patch::create(model, std::move(outcome.updates), std::move(provenance));
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
