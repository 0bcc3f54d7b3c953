#include "edits/value_optimizer.h"

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <memory>
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

// ----- what every slot and request share, on the model's device -----

struct Plan {
  int64_t requests = 0, slots = 0, values = 0;
  at::Tensor slot_request;  // [D] the request of each slot
  at::Tensor slot_weight;   // [D]
  // Requests about the same subject share its vectors (one per fact token), so the vectors carry
  // every new fact about it at once instead of each request overwriting the others.
  at::Tensor slot_value;  // [D] -> [V]
  at::Tensor first_slot;  // [V] a slot of each value, for its clamp
};

Plan make_plan(const Model& model, const std::vector<EditRequest>& requests, const std::vector<FactTokens>& tokens) {
  const auto device = model.device();
  auto on_device = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  Plan plan;
  plan.requests = static_cast<int64_t>(requests.size());
  const std::vector<int64_t> slot_request = slot_requests(requests.size(), tokens);
  plan.slots = static_cast<int64_t>(slot_request.size());
  plan.slot_request = on_device(slot_request);
  plan.slot_weight = at::tensor(slot_weights(slot_request, requests.size()), at::kDouble)
                         .to(at::TensorOptions().dtype(at::kFloat).device(device));
  const std::vector<int64_t> slot_value = shared_value_slots(requests, tokens);
  plan.values = 1 + *std::max_element(slot_value.begin(), slot_value.end());
  plan.slot_value = on_device(slot_value);
  std::vector<int64_t> first_slot(static_cast<size_t>(plan.values), -1);
  for (int64_t d = plan.slots - 1; d >= 0; --d) first_slot[static_cast<size_t>(slot_value[static_cast<size_t>(d)])] = d;
  plan.first_slot = on_device(first_slot);
  return plan;
}

// ----- the batch in chunks -----

// The rows run in chunks of similar length, each padded to its own longest row: the padding of one
// batch-wide length is not computed, and no operator allocates a [rows x longest x width] tensor
// (on the CPU, allocations that large are fresh pages every pass). The losses are sums over rows,
// so the gradient is the sum of the chunks' gradients. Indices are flat (row * length + position)
// within the chunk.
struct Chunk {
  PaddedBatch batch;
  at::Tensor add_flat, add_slot;    // where each slot's vector goes, and which slot it is
  at::Tensor bare_flat, bare_slot;  // the bare-prompt slots in this chunk, for the initial values
  at::Tensor label_token, label_request, label_weight;
  at::Tensor kl_request;       // [K] the request of each KL row in the chunk
  at::Tensor logit_positions;  // the labels' positions, then the KL rows'
  int64_t labels = 0;
  at::Tensor kl_initial;  // [K, V] log-probabilities at the KL rows before any change
  ForwardCheckpoint checkpoint;
  ForwardOptions forward;
  Hooks hooks;
  std::vector<at::Tensor> layer_keys;  // through the update: each layer's key, read before its down projection
  explicit Chunk(int layers) : hooks(layers) {}
};

// Without ValueOptions::chunk_tokens, a chunk holds at most this many padded tokens: its widest
// activation stays around 16 MiB.
int64_t chunk_token_budget(const Model& model) {
  int64_t widest = model.spec().hidden_size;
  for (int i = 0; i < model.arch().num_layers(); ++i)
    widest = std::max(widest, model.arch().intermediate_size_for_layer(i));
  return std::max<int64_t>(256, (int64_t{4} << 20) / widest);
}

// Rows by length, longest first, cut into chunks of at most `budget` padded tokens.
std::vector<std::vector<int64_t>> chunk_rows(const RewriteRows& rows, int64_t budget) {
  std::vector<int64_t> order(rows.tokens.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  auto length = [&](int64_t row) { return static_cast<int64_t>(rows.tokens[static_cast<size_t>(row)].size()); };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return length(a) > length(b); });
  std::vector<std::vector<int64_t>> out;
  for (int64_t row : order) {
    if (out.empty() || static_cast<int64_t>(out.back().size() + 1) * length(out.back().front()) > budget)
      out.emplace_back();
    out.back().push_back(row);
  }
  return out;
}

std::vector<std::unique_ptr<Chunk>> make_chunks(const Model& model, const RewriteRows& rows,
                                                const std::vector<double>& label_weight, int64_t budget) {
  const auto device = model.device();
  auto on_device = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  const std::vector<std::vector<int64_t>> groups = chunk_rows(rows, budget > 0 ? budget : chunk_token_budget(model));
  // Where each row went: (chunk, row within it).
  std::vector<std::pair<size_t, int64_t>> where(rows.tokens.size());
  for (size_t c = 0; c < groups.size(); ++c)
    for (size_t k = 0; k < groups[c].size(); ++k) where[static_cast<size_t>(groups[c][k])] = {c, k};
  struct Lists {
    std::vector<int64_t> add_flat, add_slot, bare_flat, bare_slot, label_flat, label_token, label_request, kl_flat,
        kl_request;
    std::vector<double> label_weight;
  };
  std::vector<Lists> lists(groups.size());
  std::vector<int64_t> length(groups.size());
  for (size_t c = 0; c < groups.size(); ++c)
    length[c] = static_cast<int64_t>(rows.tokens[static_cast<size_t>(groups[c].front())].size());
  auto flat = [&](int64_t row, int64_t position) {
    const auto [c, k] = where[static_cast<size_t>(row)];
    return std::make_pair(c, k * length[c] + position);
  };
  for (size_t j = 0; j < rows.add_row.size(); ++j) {
    const auto [c, f] = flat(rows.add_row[j], rows.add_position[j]);
    lists[c].add_flat.push_back(f), lists[c].add_slot.push_back(rows.add_slot[j]);
  }
  for (size_t d = 0; d < rows.bare_row.size(); ++d) {
    const auto [c, f] = flat(rows.bare_row[d], rows.bare_position[d]);
    lists[c].bare_flat.push_back(f), lists[c].bare_slot.push_back(static_cast<int64_t>(d));
  }
  for (size_t j = 0; j < rows.label_row.size(); ++j) {
    const auto [c, f] = flat(rows.label_row[j], rows.label_position[j]);
    lists[c].label_flat.push_back(f), lists[c].label_token.push_back(rows.label_token[j]);
    lists[c].label_request.push_back(rows.request[static_cast<size_t>(rows.label_row[j])]);
    lists[c].label_weight.push_back(label_weight[j]);
  }
  for (size_t r = 0; r < rows.kl_row.size(); ++r) {
    const auto [c, f] = flat(rows.kl_row[r], rows.kl_position[r]);
    lists[c].kl_flat.push_back(f), lists[c].kl_request.push_back(static_cast<int64_t>(r));
  }
  std::vector<std::unique_ptr<Chunk>> out;
  for (size_t c = 0; c < groups.size(); ++c) {
    std::vector<std::vector<int64_t>> tokens;
    for (int64_t row : groups[c]) tokens.push_back(rows.tokens[static_cast<size_t>(row)]);
    auto chunk = std::make_unique<Chunk>(model.arch().num_layers());
    chunk->batch = pad_right(model, tokens);
    const Lists& l = lists[c];
    chunk->add_flat = on_device(l.add_flat), chunk->add_slot = on_device(l.add_slot);
    chunk->bare_flat = on_device(l.bare_flat), chunk->bare_slot = on_device(l.bare_slot);
    chunk->label_token = on_device(l.label_token), chunk->label_request = on_device(l.label_request);
    chunk->label_weight =
        at::tensor(l.label_weight, at::kDouble).to(at::TensorOptions().dtype(at::kFloat).device(device));
    chunk->kl_request = on_device(l.kl_request);
    std::vector<int64_t> positions = l.label_flat;
    positions.insert(positions.end(), l.kl_flat.begin(), l.kl_flat.end());
    chunk->logit_positions = on_device(positions);
    chunk->labels = static_cast<int64_t>(l.label_flat.size());
    out.push_back(std::move(chunk));
  }
  return out;
}

// The first layer a pass must compute: the optimiser's hooks are all at or after
// blocks.{L}.mlp.hook_post of their layers, so everything below the lowest one is the same in every
// pass and runs once (ForwardCheckpoint). -1: no checkpoint (a hook before an MLP activation at
// layer 0, or a model-level point).
int checkpoint_layer(const ValueOptions& options) {
  auto from_activation = [](HookPoint p) { return p >= HookPoint::MlpPost && p <= HookPoint::ResidPost; };
  if (options.point.layer < 0) return -1;
  int layer = from_activation(options.point.point) ? options.point.layer : options.point.layer - 1;
  for (const auto& write : options.through_update) layer = std::min(layer, write.layer);
  return layer;
}

// ----- the vectors and the hooks that add them -----

// The parameters and, each step, the leaves the passes differentiate: every chunk's backward adds
// into the same leaves' gradients, and the chain back to the parameters (a gather; a product with
// the update's right factor) is applied once per step by hand.
struct Vectors {
  at::Tensor delta;                     // [V, H] the parameters
  at::Tensor slot;                      // [D, H] each slot's vector (shared ones repeated), a leaf
  std::vector<at::Tensor> update_maps;  // through the update, per layer: share * key_map [I, D]
  std::vector<at::Tensor> updates;      // per layer: update_map @ slot [I, H] (the transposed dW), a leaf
  at::Tensor initial;                   // [D, H] the activation at each bare-prompt slot, from the first pass

  void begin_step(const Plan& plan) {
    slot = delta.index_select(0, plan.slot_value).requires_grad_(true);
    updates.clear();
    for (const at::Tensor& map : update_maps) updates.push_back(at::matmul(map, slot.detach()).requires_grad_(true));
  }
  // d(loss)/d(delta) from the leaves' gradients.
  at::Tensor gradient(const Plan& plan) const {
    at::Tensor g = slot.grad().defined() ? slot.grad() : at::zeros_like(slot);
    for (size_t w = 0; w < updates.size(); ++w)
      if (updates[w].grad().defined()) g = g + at::matmul(update_maps[w].t(), updates[w].grad());
    return at::zeros_like(delta).index_add(0, plan.slot_value, g);
  }
};

// At `point`: captures the initial activations on the chunk's first pass; as published, adds each
// slot's vector at its positions (through the update, the update's hooks do the adding instead).
void add_vectors_at_slots(Chunk& chunk, const ValueOptions& options, Vectors& v) {
  const bool through = !options.through_update.empty();
  auto add = [&chunk, &v, through, first = true](const at::Tensor& x, const HookName&) mutable {
    const at::Tensor flat = x.flatten(0, 1);
    if (first) {
      v.initial.index_copy_(0, chunk.bare_slot, flat.detach().to(at::kFloat).index_select(0, chunk.bare_flat));
      first = false;
    }
    if (through) return std::optional<at::Tensor>();
    const at::Tensor vectors = v.slot.index_select(0, chunk.add_slot).to(x.scalar_type());
    return std::optional<at::Tensor>(flat.index_add(0, chunk.add_flat, vectors).view(x.sizes()));
  };
  chunk.hooks.add(options.point, add);
}

// Through the update: each layer's MLP output gains key . (share * key_map D) at every position, key
// the layer's input to the down projection (mlp.hook_post), read just before.
void add_update_hooks(Chunk& chunk, const ValueOptions& options, Vectors& v) {
  chunk.layer_keys.assign(options.through_update.size(), at::Tensor());
  for (size_t w = 0; w < options.through_update.size(); ++w) {
    const int layer = options.through_update[w].layer;
    chunk.hooks.add({HookPoint::MlpPost, layer},
                    [&chunk, w](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
                      chunk.layer_keys[w] = x;
                      return std::nullopt;
                    });
    chunk.hooks.add({HookPoint::MlpDown, layer},
                    [&chunk, &v, w, layer](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
                      if (!chunk.layer_keys[w].defined())
                        throw Error("optimize_values: layer " + std::to_string(layer) +
                                    "'s down projection ran without its mlp.hook_post key");
                      const at::Tensor change = at::matmul(chunk.layer_keys[w].to(at::kFloat), v.updates[w]);
                      chunk.layer_keys[w] = at::Tensor();
                      return x + change.to(x.scalar_type());
                    });
  }
}

// The [I, D] maps of the update's layers, checked and scaled by their shares.
std::vector<at::Tensor> update_maps(const Model& model, const ValueOptions& options, int64_t slots) {
  std::vector<at::Tensor> out;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
  for (const auto& write : options.through_update) {
    const int64_t width = model.arch().intermediate_size_for_layer(write.layer);
    if (write.key_map.dim() != 2 || write.key_map.size(0) != width || write.key_map.size(1) != slots)
      throw Error("optimize_values: layer " + std::to_string(write.layer) + "'s key map must be [" +
                  std::to_string(width) + ", " + std::to_string(slots) + "]");
    out.push_back((write.key_map.to(f32) * write.share).contiguous());
  }
  return out;
}

void prepare_chunk(Chunk& chunk, const ValueOptions& options, Vectors& v, int checkpoint) {
  add_vectors_at_slots(chunk, options, v);
  add_update_hooks(chunk, options, v);
  chunk.forward.attention_mask = chunk.batch.mask;
  chunk.forward.hooks = &chunk.hooks;
  chunk.forward.logit_positions = chunk.logit_positions;
  chunk.checkpoint.layer = checkpoint;
  if (checkpoint >= 0) chunk.forward.checkpoint = &chunk.checkpoint;
}

// ----- the loss -----

// Per request [N]: the loss (with the graph while a backward follows) and the mean probability of
// the target's tokens (no gradient).
struct StepLoss {
  at::Tensor loss, mean_prob;
};

// One chunk's part of every request's loss: its labels' negative log-likelihood and its KL rows.
StepLoss chunk_loss(const at::Tensor& logits, Chunk& chunk, const Plan& plan, const ValueOptions& options,
                    at::TensorOptions f32) {
  const at::Tensor label_logp =
      at::log_softmax(logits.narrow(0, 0, chunk.labels), -1).gather(1, chunk.label_token.unsqueeze(1)).squeeze(1);
  at::Tensor loss = at::zeros({plan.requests}, f32).index_add(0, chunk.label_request, -label_logp * chunk.label_weight);
  const at::Tensor kl_logp = at::log_softmax(logits.narrow(0, chunk.labels, logits.size(0) - chunk.labels), -1);
  if (!chunk.kl_initial.defined()) chunk.kl_initial = kl_logp.detach();
  const at::Tensor kl = (kl_logp.exp() * (kl_logp - chunk.kl_initial)).sum(-1);
  loss = loss.index_add(0, chunk.kl_request, options.kl_factor * kl);
  const at::Tensor mean_prob =
      at::zeros({plan.requests}, f32).index_add(0, chunk.label_request, label_logp.detach().exp() * chunk.label_weight);
  return {loss, mean_prob};
}

// The terms of the vectors alone: weight decay and, when on, the expected leakage.
at::Tensor vector_terms(const Plan& plan, const ValueOptions& options, const at::Tensor& leakage, const Vectors& v,
                        at::TensorOptions f32) {
  const int64_t n = plan.requests;
  const at::Tensor slot_decay = v.slot.norm(2, 1) / v.initial.norm(2, 1).pow(2) * plan.slot_weight;
  at::Tensor terms = options.weight_decay * at::zeros({n}, f32).index_add(0, plan.slot_request, slot_decay);
  if (leakage.defined()) {
    const at::Tensor per_slot = (at::matmul(leakage, v.slot) * v.slot).sum(1);  // [D]
    // Through the update, one update carries every request, and each request's loss counts
    // all of its leakage: the batch minimises the requests' mean loss plus the weight times the
    // whole update's leakage (for one request, ROME's term), so each vector feels the leakage
    // gradient n times as strongly as a lone edit would, and once weight x leakage exceeds the
    // stopping loss every request runs all its steps.
    const bool through = !options.through_update.empty();
    terms = terms + options.leakage_weight * (through ? per_slot.sum().expand({n})
                                                      : at::zeros({n}, f32).index_add(0, plan.slot_request, per_slot));
  }
  return terms;
}

// The [D, D] leakage metric when the expected-leakage term is on, else undefined.
at::Tensor leakage_metric(const ValueOptions& options, int64_t slots, at::TensorOptions f32) {
  if (!(options.leakage_weight > 0) || !options.leakage_metric.defined()) return at::Tensor();
  if (options.leakage_metric.dim() != 2 || options.leakage_metric.size(0) != slots ||
      options.leakage_metric.size(1) != slots)
    throw Error("optimize_values: the leakage metric must be [slots, slots] (" + std::to_string(slots) + ")");
  return options.leakage_metric.to(f32);
}

// One step's passes: every chunk forward (its backward too when an update follows), then the
// vectors' own terms. Returns the requests' losses and probabilities, detached.
StepLoss run_step(const Model& model, std::vector<std::unique_ptr<Chunk>>& chunks, const Plan& plan,
                  const ValueOptions& options, const at::Tensor& leakage, Vectors& v, bool backward,
                  at::TensorOptions f32) {
  StepLoss total{at::zeros({plan.requests}, f32), at::zeros({plan.requests}, f32)};
  for (auto& chunk : chunks) {
    const at::Tensor logits = model.forward(chunk->batch.ids, chunk->forward).to(at::kFloat).flatten(0, 1);
    const StepLoss part = chunk_loss(logits, *chunk, plan, options, f32);
    if (backward && part.loss.requires_grad()) part.loss.sum().backward();
    total.loss += part.loss.detach();
    total.mean_prob += part.mean_prob;
  }
  const at::Tensor terms = vector_terms(plan, options, leakage, v, f32);
  if (backward) terms.sum().backward();
  total.loss += terms.detach();
  return total;
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

// Records the step's losses and probabilities (one copy to the host) and which requests are still
// above the stopping loss; returns whether any is. Coupled losses (through the update): a request
// that met the stopping loss can be pushed back above it by the others' vectors, and then moves again.
bool record_step(const StepLoss& step, const ValueOptions& options, std::vector<uint8_t>& active,
                 OptimizedValues& out) {
  const bool through = !options.through_update.empty();
  const at::Tensor both = at::stack({step.loss, step.mean_prob}).to(at::kDouble).cpu().contiguous();
  const double* loss = both.data_ptr<double>();
  const double* prob = loss + both.size(1);
  bool moving = false;
  for (size_t r = 0; r < active.size(); ++r) {
    out.loss[r] = loss[r];
    out.target_prob[r] = prob[r];
    if (loss[r] < options.stop_loss) active[r] = 0;
    else if (through) active[r] = 1;
    moving = moving || active[r] != 0;
  }
  return moving;
}

// One Adam update of the still-active vectors, then each change clamped to clamp_norm_factor times
// the size of what it changes.
void update_vectors(const Plan& plan, const ValueOptions& options, const std::vector<uint8_t>& active, Adam& adam,
                    Vectors& v, OptimizedValues& out, at::TensorOptions f32) {
  const at::Tensor g = v.gradient(plan);
  std::vector<float> active_rows(active.begin(), active.end());
  const at::Tensor request_active = at::tensor(active_rows, at::kFloat).to(f32.device());
  // A shared vector keeps moving while any of its requests is still above the stopping loss.
  const at::Tensor value_active = at::zeros({plan.values}, f32)
                                      .index_add(0, plan.slot_value, request_active.index_select(0, plan.slot_request))
                                      .clamp_max(1);
  adam.step(v.delta, g, value_active, options.learning_rate);
  for (size_t r = 0; r < active.size(); ++r)
    if (active[r] != 0) ++out.steps[r];
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
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(model.device());
  const Plan plan = make_plan(model, requests, tokens);
  const at::Tensor leakage = leakage_metric(options, plan.slots, f32);

  Vectors v;
  v.delta = at::zeros({plan.values, model.spec().hidden_size}, f32);
  v.initial = at::zeros({plan.slots, model.spec().hidden_size}, f32);
  v.update_maps = update_maps(model, options, plan.slots);
  std::vector<std::unique_ptr<Chunk>> chunks = make_chunks(
      model, rows, label_weights(rows, requests.size(), options.bare_prompt_weight), options.chunk_tokens);
  const int checkpoint = checkpoint_layer(options);
  for (auto& chunk : chunks) prepare_chunk(*chunk, options, v, checkpoint);

  OptimizedValues out;
  out.loss.assign(requests.size(), 0.0);
  out.target_prob.assign(requests.size(), 0.0);
  out.steps.assign(requests.size(), 0);
  std::vector<uint8_t> active(requests.size(), 1);
  Adam adam;
  at::AutoGradMode grad(true);
  for (int64_t step = 0; step < options.steps; ++step) {
    v.begin_step(plan);
    const bool last = step == options.steps - 1;  // as coded: no update on the last step
    const StepLoss loss = run_step(model, chunks, plan, options, leakage, v, /*backward=*/!last, f32);
    const bool moving = record_step(loss, options, active, out);
    if (!moving || last) break;
    update_vectors(plan, options, active, adam, v, out, f32);
  }
  out.initial = v.initial.cpu();
  out.delta = v.delta.index_select(0, plan.slot_value).cpu();
  out.values = plan.values;
  return out;
}

}  // namespace graft::edits
