#include "edits/value_optimizer.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/model.h"
#include "edits/batch.h"
#include "edits/text.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

// ----- the rows of the batch -----

// The rows of the value-optimisation batch: for each request, one rewriting row per context (prompt
// then target tokens but the last) and one KL row ("{subject} is a"); in every row, the positions
// of the request's fact slots.
struct RewriteRows {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<int64_t> request;  // which request each row belongs to
  std::vector<bool> is_kl;
  // Where each slot's vector is added: (row, position, slot), one entry per slot per row.
  std::vector<int64_t> add_row, add_position, add_slot;
  // Per slot: its position in the request's bare-prompt row (the "{}" context), for the initial value.
  std::vector<int64_t> bare_row, bare_position;
  // Per KL row: the position whose next-token distribution the KL term holds (the last fact slot).
  std::vector<int64_t> kl_row, kl_position;
  // Teacher-forced label positions: (row, position, token).
  std::vector<int64_t> label_row, label_position, label_token;

  int64_t add_row_of(int64_t request_index, bool kl, std::vector<int64_t> ids) {
    const int64_t row = static_cast<int64_t>(tokens.size());
    tokens.push_back(std::move(ids));
    request.push_back(request_index);
    is_kl.push_back(kl);
    return row;
  }
  void add_slots(int64_t row, const std::vector<int64_t>& positions, int64_t first_slot) {
    for (size_t k = 0; k < positions.size(); ++k) {
      add_row.push_back(row);
      add_position.push_back(positions[k]);
      add_slot.push_back(first_slot + static_cast<int64_t>(k));
    }
  }
};

// One rewriting row: the context with the request's prompt and the subject, then the new target.
void add_rewriting_row(const Model& model, const EditRequest& request, const std::string& context,
                       const FactTokens& fact, int64_t r, int64_t first_slot, RewriteRows& rows) {
  const std::string prompt_template = fill_template(context, request.prompt);
  const SubjectSpan span = locate_subject(model, prompt_template, request.subject);
  const std::string filled = fill_template(prompt_template, request.subject);
  const PromptWithTarget pt = split_target(model, filled, request.target_new);
  if (span.last >= static_cast<int64_t>(pt.prompt.size()))
    throw InputError("request \"" + filled + "\": the target merges with the subject's last token");
  const std::vector<int64_t> positions = fact.in(span.first, span.last);
  std::vector<int64_t> ids = pt.prompt;
  ids.insert(ids.end(), pt.target.begin(), pt.target.end() - 1);
  const int64_t row = static_cast<int64_t>(rows.tokens.size());
  for (size_t j = 0; j < pt.target.size(); ++j) {
    rows.label_row.push_back(row);
    rows.label_position.push_back(static_cast<int64_t>(pt.prompt.size() + j) - 1);
    rows.label_token.push_back(pt.target[j]);
  }
  if (context == "{}" && static_cast<int64_t>(rows.bare_row.size()) == first_slot)
    for (int64_t position : positions) rows.bare_row.push_back(row), rows.bare_position.push_back(position);
  rows.add_slots(row, positions, first_slot);
  rows.add_row_of(r, false, std::move(ids));
}

RewriteRows rewrite_rows(const Model& model, const std::vector<EditRequest>& requests,
                         const std::vector<std::string>& contexts, const std::vector<FactTokens>& tokens) {
  RewriteRows rows;
  int64_t first_slot = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    const FactTokens fact = fact_tokens_of(tokens, r);
    for (const std::string& context : contexts)
      add_rewriting_row(model, requests[r], context, fact, static_cast<int64_t>(r), first_slot, rows);
    const SubjectSpan kl = locate_subject(model, kEssencePrompt, requests[r].subject);
    const int64_t row = static_cast<int64_t>(rows.tokens.size());
    rows.add_slots(row, fact.in(kl.first, kl.last), first_slot);
    rows.kl_row.push_back(row);
    rows.kl_position.push_back(kl.last);
    rows.add_row_of(static_cast<int64_t>(r), true, kl.ids);
    first_slot += static_cast<int64_t>(fact.size());
    if (static_cast<int64_t>(rows.bare_row.size()) != first_slot)
      throw Error("context templates must start with the bare \"{}\"");
  }
  return rows;
}

// Each label counts 1 / (target length) / (rows of its request): the mean over tokens, then rows.
// Published: every context counts the same. With a bare-prompt weight w >= 0, the bare prompt counts
// w and the prefixed contexts share 1 - w.
std::vector<double> label_weights(const RewriteRows& rows, size_t requests, double bare_prompt_weight) {
  std::vector<int64_t> per_row(rows.tokens.size(), 0), rewrite_rows_of(requests, 0);
  for (int64_t r : rows.label_row) ++per_row[static_cast<size_t>(r)];
  for (size_t b = 0; b < rows.tokens.size(); ++b)
    if (!rows.is_kl[b]) ++rewrite_rows_of[static_cast<size_t>(rows.request[b])];
  const std::set<int64_t> bare_rows(rows.bare_row.begin(), rows.bare_row.end());
  std::vector<double> out(rows.label_row.size());
  for (size_t j = 0; j < rows.label_row.size(); ++j) {
    const size_t row = static_cast<size_t>(rows.label_row[j]);
    const double others = static_cast<double>(rewrite_rows_of[static_cast<size_t>(rows.request[row])]) - 1;
    double row_weight = 1.0 / (others + 1);
    if (bare_prompt_weight >= 0 && others > 0)
      row_weight = bare_rows.count(static_cast<int64_t>(row)) ? bare_prompt_weight : (1 - bare_prompt_weight) / others;
    out[j] = row_weight / static_cast<double>(per_row[row]);
  }
  return out;
}

// A request's weight decay is the mean over its slots: each slot weighs 1 / (its request's slots).
std::vector<double> slot_weights(const std::vector<int64_t>& slot_request, size_t requests) {
  std::vector<int64_t> per_request(requests, 0);
  for (int64_t r : slot_request) ++per_request[static_cast<size_t>(r)];
  std::vector<double> out(slot_request.size());
  for (size_t d = 0; d < slot_request.size(); ++d)
    out[d] = 1.0 / static_cast<double>(per_request[static_cast<size_t>(slot_request[d])]);
  return out;
}

// ----- the batch as index tensors on the model's device -----

struct Plan {
  int64_t requests = 0, slots = 0, values = 0;
  at::Tensor slot_request;        // [D] the request of each slot
  at::Tensor add_flat, add_slot;  // where each slot's vector goes, and which slot it is
  at::Tensor bare_flat;           // [D] each slot in its bare-prompt row
  at::Tensor kl_flat;             // [N]
  at::Tensor label_flat, label_token, label_request, label_weight;
  at::Tensor slot_weight;  // [D]
  // Requests about the same subject share its vectors (one per fact token), so the vectors carry
  // every new fact about it at once instead of each request overwriting the others.
  at::Tensor slot_value;  // [D] -> [V]
  at::Tensor first_slot;  // [V] a slot of each value, for its clamp
};

Plan make_plan(const Model& model, const std::vector<EditRequest>& requests, const RewriteRows& rows, int64_t length,
               const ValueOptions& options, const std::vector<FactTokens>& tokens) {
  const auto device = model.device();
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  auto on_device = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  auto flat_index = [&](const std::vector<int64_t>& row, const std::vector<int64_t>& position) {
    return on_device(row) * length + on_device(position);
  };
  Plan plan;
  plan.requests = static_cast<int64_t>(requests.size());
  const std::vector<int64_t> slot_request = slot_requests(requests.size(), tokens);
  plan.slots = static_cast<int64_t>(slot_request.size());
  plan.slot_request = on_device(slot_request);
  plan.add_flat = flat_index(rows.add_row, rows.add_position);
  plan.add_slot = on_device(rows.add_slot);
  plan.bare_flat = flat_index(rows.bare_row, rows.bare_position);
  plan.kl_flat = flat_index(rows.kl_row, rows.kl_position);
  plan.label_flat = flat_index(rows.label_row, rows.label_position);
  plan.label_token = on_device(rows.label_token);
  plan.label_request = on_device(rows.request).index_select(0, on_device(rows.label_row));
  plan.label_weight = at::tensor(label_weights(rows, requests.size(), options.bare_prompt_weight), at::kDouble).to(f32);
  plan.slot_weight = at::tensor(slot_weights(slot_request, requests.size()), at::kDouble).to(f32);
  const std::vector<int64_t> slot_value = shared_value_slots(requests, tokens);
  plan.values = 1 + *std::max_element(slot_value.begin(), slot_value.end());
  plan.slot_value = on_device(slot_value);
  std::vector<int64_t> first_slot(static_cast<size_t>(plan.values), -1);
  for (int64_t d = plan.slots - 1; d >= 0; --d) first_slot[static_cast<size_t>(slot_value[static_cast<size_t>(d)])] = d;
  plan.first_slot = on_device(first_slot);
  return plan;
}

// ----- the state the hooks and the loss share -----

struct Vectors {
  at::Tensor delta;       // [V, H] the parameters
  at::Tensor slot_delta;  // [D, H] each slot's vector (shared ones repeated), rebuilt every step
  at::Tensor initial;     // [D, H] the activation at each bare-prompt slot, captured on the first pass
  at::Tensor kl_initial;  // log-probabilities at the KL rows before any change
};

// At `point`: captures the initial activations; as published, adds each slot's vector at its
// positions (through the update, the update's hooks do the adding instead).
void add_vectors_at_slots(Hooks& hooks, const ValueOptions& options, const Plan& plan, Vectors& v,
                          at::TensorOptions f32) {
  const bool through = !options.through_update.empty();
  hooks.add(options.point,
            [&plan, &v, through, f32](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
              at::Tensor flat = x.flatten(0, 1);
              if (!v.initial.defined()) v.initial = flat.detach().to(at::kFloat).index_select(0, plan.bare_flat);
              if (through) return std::nullopt;
              at::Tensor added =
                  at::zeros(flat.sizes(), f32).index_add(0, plan.add_flat, v.slot_delta.index_select(0, plan.add_slot));
              return (flat + added.to(x.scalar_type())).view(x.sizes());
            });
}

// Through the update: each layer's MLP output gains share * (key . key_map) D at every position,
// key the layer's input to the down projection (mlp.hook_post), read just before.
void add_update_hooks(Hooks& hooks, const Model& model, const ValueOptions& options, int64_t slots, Vectors& v,
                      std::vector<at::Tensor>& layer_keys) {
  layer_keys.assign(options.through_update.size(), at::Tensor());
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
  for (size_t w = 0; w < options.through_update.size(); ++w) {
    const auto& write = options.through_update[w];
    const int64_t width = model.arch().intermediate_size_for_layer(write.layer);
    if (write.key_map.dim() != 2 || write.key_map.size(0) != width || write.key_map.size(1) != slots)
      throw Error("optimize_values: layer " + std::to_string(write.layer) + "'s key map must be [" +
                  std::to_string(width) + ", " + std::to_string(slots) + "]");
    const at::Tensor key_map = (write.key_map.to(f32) * write.share).contiguous();
    hooks.add({HookPoint::MlpPost, write.layer},
              [&layer_keys, w](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
                layer_keys[w] = x;
                return std::nullopt;
              });
    hooks.add({HookPoint::MlpDown, write.layer},
              [&layer_keys, &v, key_map, w, layer = write.layer](const at::Tensor& x,
                                                                 const HookName&) -> std::optional<at::Tensor> {
                if (!layer_keys[w].defined())
                  throw Error("optimize_values: layer " + std::to_string(layer) +
                              "'s down projection ran without its mlp.hook_post key");
                const at::Tensor change = at::matmul(at::matmul(layer_keys[w].to(at::kFloat), key_map), v.slot_delta);
                layer_keys[w] = at::Tensor();
                return x + change.to(x.scalar_type());
              });
  }
}

// ----- the loss -----

struct StepLoss {
  at::Tensor loss;       // [N] per request
  at::Tensor mean_prob;  // [N] mean probability of the target's tokens (no gradient)
};

StepLoss step_loss(const at::Tensor& logits, const Plan& plan, const ValueOptions& options, const at::Tensor& leakage,
                   Vectors& v, at::TensorOptions f32) {
  const int64_t n = plan.requests;
  at::Tensor label_logp =
      at::log_softmax(logits.index_select(0, plan.label_flat), -1).gather(1, plan.label_token.unsqueeze(1)).squeeze(1);
  at::Tensor nll = at::zeros({n}, f32).index_add(0, plan.label_request, -label_logp * plan.label_weight);
  at::Tensor kl_logp = at::log_softmax(logits.index_select(0, plan.kl_flat), -1);
  if (!v.kl_initial.defined()) v.kl_initial = kl_logp.detach();
  at::Tensor kl = (kl_logp.exp() * (kl_logp - v.kl_initial)).sum(-1);
  at::Tensor slot_decay = v.slot_delta.norm(2, 1) / v.initial.norm(2, 1).pow(2) * plan.slot_weight;
  at::Tensor decay = options.weight_decay * at::zeros({n}, f32).index_add(0, plan.slot_request, slot_decay);
  at::Tensor loss = nll + options.kl_factor * kl + decay;  // [N]
  if (leakage.defined()) {
    const at::Tensor per_slot = (at::matmul(leakage, v.slot_delta) * v.slot_delta).sum(1);  // [D]
    // Through the update, one update carries every request, and each request's loss counts
    // all of its leakage: the batch minimises the requests' mean loss plus the weight times the
    // whole update's leakage (for one request, ROME's term), so each vector feels the leakage
    // gradient n times as strongly as a lone edit would, and once weight x leakage exceeds the
    // stopping loss every request runs all its steps.
    const bool through = !options.through_update.empty();
    loss = loss + options.leakage_weight * (through ? per_slot.sum().expand({n})
                                                    : at::zeros({n}, f32).index_add(0, plan.slot_request, per_slot));
  }
  at::Tensor mean_prob = at::zeros({n}, f32).index_add(0, plan.label_request,
                                                       label_logp.detach().exp() * plan.label_weight);
  return {loss, mean_prob};
}

// The [D, D] leakage metric when the expected-leakage term is on, else undefined.
at::Tensor leakage_metric(const ValueOptions& options, int64_t slots, at::TensorOptions f32) {
  if (!(options.leakage_weight > 0) || !options.leakage_metric.defined()) return at::Tensor();
  if (options.leakage_metric.dim() != 2 || options.leakage_metric.size(0) != slots ||
      options.leakage_metric.size(1) != slots)
    throw Error("optimize_values: the leakage metric must be [slots, slots] (" + std::to_string(slots) + ")");
  return options.leakage_metric.to(f32);
}

// ----- the optimiser -----

// Adam on a [N, H] parameter, rows frozen once their request reached the stopping loss.
struct Adam {
  at::Tensor m, v;
  int64_t t = 0;
  void step(at::Tensor& param, const at::Tensor& grad, const at::Tensor& active, double lr) {
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    if (!m.defined()) m = at::zeros_like(param), v = at::zeros_like(param);
    ++t;
    m.mul_(b1).add_(grad, 1 - b1);
    v.mul_(b2).addcmul_(grad, grad, 1 - b2);
    at::Tensor update = (m / (1 - std::pow(b1, t))) / ((v / (1 - std::pow(b2, t))).sqrt() + eps);
    param.sub_(update * lr * active.unsqueeze(1));
  }
};

// Records the step's losses and probabilities; returns whether any request is still above the
// stopping loss. Coupled losses (through the update): a request that met the stopping loss can be
// pushed back above it by the others' vectors, and then moves again.
bool record_step(const StepLoss& step, const ValueOptions& options, at::Tensor& active, OptimizedValues& out) {
  const bool through = !options.through_update.empty();
  const at::Tensor loss_cpu = step.loss.detach().to(at::kDouble).cpu(), prob_cpu = step.mean_prob.to(at::kDouble).cpu();
  for (int64_t r = 0; r < static_cast<int64_t>(out.loss.size()); ++r) {
    out.loss[static_cast<size_t>(r)] = loss_cpu[r].item<double>();
    out.target_prob[static_cast<size_t>(r)] = prob_cpu[r].item<double>();
    if (out.loss[static_cast<size_t>(r)] < options.stop_loss) active[r] = 0;
    else if (through) active[r] = 1;
  }
  return active.sum().item<double>() != 0;
}

// One Adam update of the still-active vectors, then each change clamped to clamp_norm_factor times
// the size of what it changes.
void update_vectors(const StepLoss& step, const Plan& plan, const ValueOptions& options, const at::Tensor& active,
                    Adam& adam, Vectors& v, OptimizedValues& out, at::TensorOptions f32) {
  step.loss.sum().backward();
  at::Tensor g = v.delta.grad().detach();
  v.delta = v.delta.detach();
  // A shared vector keeps moving while any of its requests is still above the stopping loss.
  const at::Tensor value_active = at::zeros({plan.values}, f32)
                                      .index_add(0, plan.slot_value, active.index_select(0, plan.slot_request))
                                      .clamp_max(1);
  adam.step(v.delta, g, value_active, options.learning_rate);
  for (int64_t r = 0; r < plan.requests; ++r)
    if (active[r].item<double>() > 0) ++out.steps[static_cast<size_t>(r)];
  at::Tensor limit = options.clamp_norm_factor * v.initial.index_select(0, plan.first_slot).norm(2, 1, true);
  at::Tensor norms = v.delta.norm(2, 1, true);
  v.delta = at::where(norms > limit, v.delta * (limit / norms), v.delta);
}

}  // namespace

nlohmann::json to_json(const ValueOptions& o) {
  return {{"steps", o.steps},
          {"learning_rate", o.learning_rate},
          {"weight_decay", o.weight_decay},
          {"kl_factor", o.kl_factor},
          {"clamp_norm_factor", o.clamp_norm_factor},
          {"stop_loss", o.stop_loss},
          {"bare_prompt_weight", o.bare_prompt_weight},
          {"leakage_weight", o.leakage_weight}};
}

OptimizedValues optimize_values(const Model& model, const std::vector<EditRequest>& requests,
                                const std::vector<std::string>& contexts, const ValueOptions& options,
                                const std::vector<FactTokens>& tokens) {
  const RewriteRows rows = rewrite_rows(model, requests, contexts, tokens);
  const PaddedBatch batch = pad_right(model, rows.tokens);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
  const Plan plan = make_plan(model, requests, rows, batch.length(), options, tokens);
  const at::Tensor leakage = leakage_metric(options, plan.slots, f32);

  Vectors v;
  v.delta = at::zeros({plan.values, model.spec().hidden_size}, f32);
  Hooks hooks(model.arch().num_layers());
  add_vectors_at_slots(hooks, options, plan, v, f32);
  std::vector<at::Tensor> layer_keys;
  add_update_hooks(hooks, model, options, plan.slots, v, layer_keys);
  ForwardOptions forward;
  forward.attention_mask = batch.mask;
  forward.hooks = &hooks;

  OptimizedValues out;
  out.loss.assign(requests.size(), 0.0);
  out.target_prob.assign(requests.size(), 0.0);
  out.steps.assign(requests.size(), 0);
  at::Tensor active = at::ones({plan.requests}, f32);
  Adam adam;
  at::AutoGradMode grad(true);
  for (int64_t step = 0; step < options.steps; ++step) {
    v.delta.requires_grad_(true);
    v.slot_delta = v.delta.index_select(0, plan.slot_value);
    const at::Tensor logits = model.forward(batch.ids, forward).to(at::kFloat).flatten(0, 1);
    const StepLoss loss = step_loss(logits, plan, options, leakage, v, f32);
    const bool moving = record_step(loss, options, active, out);
    if (!moving || step == options.steps - 1) break;  // as coded: no update on the last step
    update_vectors(loss, plan, options, active, adam, v, out, f32);
  }
  out.initial = v.initial.cpu();
  out.delta = v.delta.detach().index_select(0, plan.slot_value).cpu();
  out.values = plan.values;
  return out;
}

}  // namespace graft::edits
