#include "edits/rewrite.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/tokenizer/tokenizer.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

std::string fill(const std::string& context, const std::string& prompt) {
  std::string out = context;
  out.replace(out.find("{}"), 2, prompt);
  return out;
}

// A right-padded batch of token rows and its attention mask.
struct Batch {
  at::Tensor ids, mask;
};
Batch pad_right(const Model& model, const std::vector<std::vector<int64_t>>& rows) {
  int64_t longest = 0;
  for (const auto& r : rows) longest = std::max<int64_t>(longest, static_cast<int64_t>(r.size()));
  const int64_t n = static_cast<int64_t>(rows.size());
  Batch batch{at::full({n, longest}, model.spec().pad_token_id.value_or(0), at::kLong), at::zeros({n, longest}, at::kLong)};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t length = static_cast<int64_t>(rows[i].size());
    batch.ids[i].narrow(0, 0, length).copy_(at::tensor(rows[i], at::kLong));
    batch.mask[i].narrow(0, 0, length).fill_(1);
  }
  return batch;
}

// The rows of the value-optimisation batch: for each request, one rewriting row per context (prompt
// then target tokens but the last) and one KL row ("{subject} is a"); in every row, the positions
// of the request's fact slots.
struct RewriteRows {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<int64_t> request;     // which request each row belongs to
  std::vector<bool> is_kl;
  // Where each slot's vector is added: (row, position, slot), one entry per slot per row.
  std::vector<int64_t> add_row, add_position, add_slot;
  // Per slot: its position in the request's bare-prompt row (the "{}" context), for the initial value.
  std::vector<int64_t> bare_row, bare_position;
  // Per KL row: the position whose next-token distribution the KL term holds (the last fact slot).
  std::vector<int64_t> kl_row, kl_position;
  // Teacher-forced label positions: (row, position, token).
  std::vector<int64_t> label_row, label_position, label_token;
};

FactTokens tokens_for(const std::vector<FactTokens>& tokens, size_t request) {
  return tokens.empty() ? FactTokens{} : tokens.at(request);
}

RewriteRows rewrite_rows(const Model& model, const std::vector<EditRequest>& requests, const std::vector<std::string>& contexts,
                         const std::vector<FactTokens>& tokens) {
  RewriteRows rows;
  int64_t first_slot = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    const EditRequest& request = requests[r];
    const FactTokens fact = tokens_for(tokens, r);
    const int64_t slots = static_cast<int64_t>(fact.size());
    auto add_slots = [&](int64_t row, const std::vector<int64_t>& positions) {
      for (int64_t k = 0; k < slots; ++k) {
        rows.add_row.push_back(row);
        rows.add_position.push_back(positions[static_cast<size_t>(k)]);
        rows.add_slot.push_back(first_slot + k);
      }
    };
    for (size_t c = 0; c < contexts.size(); ++c) {
      const std::string prompt_template = fill(contexts[c], request.prompt);
      const SubjectSpan span = locate_subject(model, prompt_template, request.subject);
      std::string filled = prompt_template;
      filled.replace(filled.find("{}"), 2, request.subject);
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
      if (contexts[c] == "{}" && static_cast<int64_t>(rows.bare_row.size()) == first_slot)
        for (int64_t position : positions) rows.bare_row.push_back(row), rows.bare_position.push_back(position);
      add_slots(row, positions);
      rows.tokens.push_back(std::move(ids));
      rows.request.push_back(static_cast<int64_t>(r));
      rows.is_kl.push_back(false);
    }
    const SubjectSpan kl = locate_subject(model, "{} is a", request.subject);
    const std::vector<int64_t> kl_positions = fact.in(kl.first, kl.last);
    const int64_t row = static_cast<int64_t>(rows.tokens.size());
    add_slots(row, kl_positions);
    rows.kl_row.push_back(row);
    rows.kl_position.push_back(kl.last);
    rows.tokens.push_back(kl.ids);
    rows.request.push_back(static_cast<int64_t>(r));
    rows.is_kl.push_back(true);
    first_slot += slots;
    if (static_cast<int64_t>(rows.bare_row.size()) != first_slot) throw Error("context templates must start with the bare \"{}\"");
  }
  return rows;
}

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

}  // namespace

std::vector<std::string> context_templates(const Model& model, const std::vector<TemplateSpec>& specs, uint64_t seed) {
  std::vector<std::string> out{"{}"};
  const Tokenizer& tokenizer = model.require_tokenizer();
  const auto bos = tokenizer.bos_id();
  if (!bos) return out;  // nothing to start sampling from: the bare template alone
  at::NoGradGuard no_grad;
  for (size_t s = 0; s < specs.size(); ++s) {
    if (specs[s].count <= 0) continue;
    GenerateOptions options;
    options.max_new_tokens = specs[s].tokens;
    options.temperature = 1.0;
    options.top_k = 5;
    options.seed = seed + s;
    options.stop_tokens = std::vector<int64_t>{};
    at::Tensor start = at::full({specs[s].count, 1}, *bos, at::kLong);
    const Generation g = generate(model, start, options);
    for (int64_t row = 0; row < specs[s].count; ++row) {
      at::Tensor ids = g.ids[row].narrow(0, 1, g.ids.size(1) - 1).cpu().contiguous();
      std::string text = tokenizer.decode(std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel()), true);
      std::replace(text.begin(), text.end(), '{', ' ');
      std::replace(text.begin(), text.end(), '}', ' ');
      out.push_back(text + ". {}");
    }
  }
  return out;
}

std::vector<int64_t> slot_requests(size_t requests, const std::vector<FactTokens>& tokens) {
  std::vector<int64_t> out;
  for (size_t r = 0; r < requests; ++r)
    for (size_t k = 0; k < tokens_for(tokens, r).size(); ++k) out.push_back(static_cast<int64_t>(r));
  return out;
}

std::vector<int64_t> shared_value_slots(const std::vector<EditRequest>& requests, const std::vector<FactTokens>& tokens) {
  std::map<std::pair<std::string, int64_t>, int64_t> value_of;  // (subject, offset from its end) -> value
  std::vector<int64_t> out;
  for (size_t r = 0; r < requests.size(); ++r)
    for (int64_t offset : tokens_for(tokens, r).from_end) {
      const auto key = std::make_pair(requests[r].subject, offset);
      const auto it = value_of.emplace(key, static_cast<int64_t>(value_of.size())).first;
      out.push_back(it->second);
    }
  return out;
}

std::vector<at::Tensor> subject_activations(const Model& model, const std::vector<EditRequest>& requests,
                                            const std::vector<std::string>& contexts, const std::vector<HookName>& points,
                                            const std::vector<FactTokens>& tokens) {
  // Rows are (request, context); the captured positions are (slot, context), slot-major.
  std::vector<std::vector<int64_t>> rows;
  const int64_t c = static_cast<int64_t>(contexts.size());
  std::vector<int64_t> gather;  // flat index (row * length + position) per (slot, context), filled after padding
  std::vector<std::pair<int64_t, int64_t>> slot_context_row_position;
  for (size_t r = 0; r < requests.size(); ++r) {
    const FactTokens fact = tokens_for(tokens, r);
    std::vector<std::vector<int64_t>> positions;  // per context
    for (const auto& context : contexts) {
      const SubjectSpan span = locate_subject(model, fill(context, requests[r].prompt), requests[r].subject);
      positions.push_back(fact.in(span.first, span.last));
      rows.push_back(span.ids);
    }
    const int64_t first_row = static_cast<int64_t>(rows.size()) - c;
    for (size_t k = 0; k < fact.size(); ++k)
      for (int64_t j = 0; j < c; ++j) slot_context_row_position.emplace_back(first_row + j, positions[static_cast<size_t>(j)][k]);
  }
  const Batch batch = pad_right(model, rows);
  const int64_t length = batch.ids.size(1);
  for (const auto& [row, position] : slot_context_row_position) gather.push_back(row * length + position);
  const at::Tensor index = at::tensor(gather, at::kLong).to(model.device());
  std::vector<at::Tensor> captured(points.size());
  Hooks hooks(model.arch().num_layers());
  for (size_t p = 0; p < points.size(); ++p)
    hooks.add(points[p], [&captured, &index, p](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      captured[p] = x.flatten(0, 1).index_select(0, index).detach();
      return std::nullopt;
    });
  int deepest = 0;
  for (const auto& p : points) deepest = std::max(deepest, p.layer + 1);
  at::NoGradGuard no_grad;
  ForwardOptions forward;
  forward.attention_mask = batch.mask;
  forward.hooks = &hooks;
  forward.stop_after_layers = deepest;
  model.forward(batch.ids, forward);
  for (auto& t : captured) t = t.to(at::kFloat).reshape({-1, c, t.size(-1)});
  return captured;
}

OptimizedValues optimize_values(const Model& model, const std::vector<EditRequest>& requests,
                                const std::vector<std::string>& contexts, const ValueOptions& options,
                                const std::vector<FactTokens>& tokens) {
  const RewriteRows rows = rewrite_rows(model, requests, contexts, tokens);
  const Batch batch = pad_right(model, rows.tokens);
  const auto device = model.device();
  const int64_t n = static_cast<int64_t>(requests.size()), hidden = model.spec().hidden_size;
  const int64_t length = batch.ids.size(1);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  auto on_device = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(device); };
  auto flat_index = [&](const std::vector<int64_t>& row, const std::vector<int64_t>& position) {
    return on_device(row) * length + on_device(position);
  };

  const std::vector<int64_t> slot_request_v = slot_requests(requests.size(), tokens);
  const int64_t slots = static_cast<int64_t>(slot_request_v.size());
  const at::Tensor slot_request = on_device(slot_request_v);                     // [D]
  const at::Tensor add_flat = flat_index(rows.add_row, rows.add_position);       // where each slot's vector goes
  const at::Tensor add_slot = on_device(rows.add_slot);
  const at::Tensor bare_flat = flat_index(rows.bare_row, rows.bare_position);    // [D]
  const at::Tensor kl_flat = flat_index(rows.kl_row, rows.kl_position);         // [N]
  const at::Tensor label_flat = flat_index(rows.label_row, rows.label_position);
  const at::Tensor label_token = on_device(rows.label_token);
  const at::Tensor label_request = on_device(rows.request).index_select(0, on_device(rows.label_row));
  // Each label counts 1 / (target length) / (rows of its request): the mean over tokens, then rows.
  std::vector<double> label_weight_v(rows.label_row.size());
  {
    std::vector<int64_t> per_row(rows.tokens.size(), 0), rewrite_rows_of(static_cast<size_t>(n), 0);
    for (int64_t r : rows.label_row) ++per_row[static_cast<size_t>(r)];
    for (size_t b = 0; b < rows.tokens.size(); ++b)
      if (!rows.is_kl[b]) ++rewrite_rows_of[static_cast<size_t>(rows.request[b])];
    const std::set<int64_t> bare_rows(rows.bare_row.begin(), rows.bare_row.end());
    for (size_t j = 0; j < rows.label_row.size(); ++j) {
      const size_t row = static_cast<size_t>(rows.label_row[j]);
      const double others = static_cast<double>(rewrite_rows_of[static_cast<size_t>(rows.request[row])]) - 1;
      // Published: every context counts the same. With a bare-prompt weight w, the bare prompt
      // counts w and the prefixed contexts share 1 - w.
      double row_weight = 1.0 / (others + 1);
      if (options.bare_prompt_weight >= 0 && others > 0)
        row_weight = bare_rows.count(static_cast<int64_t>(row)) ? options.bare_prompt_weight : (1 - options.bare_prompt_weight) / others;
      label_weight_v[j] = row_weight / static_cast<double>(per_row[row]);
    }
  }
  const at::Tensor label_weight = at::tensor(label_weight_v, at::kDouble).to(f32);
  // A request's weight decay is the mean over its slots.
  std::vector<double> slot_weight_v(static_cast<size_t>(slots));
  {
    std::vector<int64_t> per_request(static_cast<size_t>(n), 0);
    for (int64_t r : slot_request_v) ++per_request[static_cast<size_t>(r)];
    for (int64_t d = 0; d < slots; ++d)
      slot_weight_v[static_cast<size_t>(d)] = 1.0 / static_cast<double>(per_request[static_cast<size_t>(slot_request_v[static_cast<size_t>(d)])]);
  }
  const at::Tensor slot_weight = at::tensor(slot_weight_v, at::kDouble).to(f32);
  // Requests about the same subject share its vectors (one per fact token), so the vectors carry
  // every new fact about it at once instead of each request overwriting the others.
  const std::vector<int64_t> slot_value_v = shared_value_slots(requests, tokens);
  const int64_t values = 1 + *std::max_element(slot_value_v.begin(), slot_value_v.end());
  const at::Tensor slot_value = on_device(slot_value_v);  // [D] -> [V]
  std::vector<int64_t> first_slot_v(static_cast<size_t>(values), -1);
  for (int64_t d = slots - 1; d >= 0; --d) first_slot_v[static_cast<size_t>(slot_value_v[static_cast<size_t>(d)])] = d;
  const at::Tensor first_slot = on_device(first_slot_v);  // [V] a slot of each value, for its clamp

  at::Tensor leakage;  // [D, D] when the expected-leakage term is on
  if (options.leakage_weight > 0 && options.leakage_metric.defined()) {
    if (options.leakage_metric.dim() != 2 || options.leakage_metric.size(0) != slots || options.leakage_metric.size(1) != slots)
      throw Error("optimize_values: the leakage metric must be [slots, slots] (" + std::to_string(slots) + ")");
    leakage = options.leakage_metric.to(f32);
  }
  at::Tensor delta = at::zeros({values, hidden}, f32);
  at::Tensor slot_delta;     // [D, H] each slot's vector (shared ones repeated), rebuilt every step
  at::Tensor initial;        // captured on the first pass
  at::Tensor kl_initial;     // log-probabilities at the KL rows before any change
  const bool through = !options.through_update.empty();
  Hooks hooks(model.arch().num_layers());
  hooks.add(options.point, [&](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
    at::Tensor flat = x.flatten(0, 1);
    if (!initial.defined()) initial = flat.detach().to(at::kFloat).index_select(0, bare_flat);
    if (through) return std::nullopt;
    at::Tensor added = at::zeros(flat.sizes(), f32).index_add(0, add_flat, slot_delta.index_select(0, add_slot));
    return (flat + added.to(x.scalar_type())).view(x.sizes());
  });
  // Through the update: each layer's MLP output gains share * (key . key_map) D at every position.
  std::vector<at::Tensor> layer_keys(options.through_update.size());
  for (size_t w = 0; w < options.through_update.size(); ++w) {
    const auto& write = options.through_update[w];
    const int64_t width = model.arch().intermediate_size_for_layer(write.layer);
    if (write.key_map.dim() != 2 || write.key_map.size(0) != width || write.key_map.size(1) != slots)
      throw Error("optimize_values: layer " + std::to_string(write.layer) + "'s key map must be [" + std::to_string(width) +
                  ", " + std::to_string(slots) + "]");
    const at::Tensor key_map = (write.key_map.to(f32) * write.share).contiguous();
    hooks.add({HookPoint::MlpPost, write.layer}, [&layer_keys, w](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      layer_keys[w] = x;
      return std::nullopt;
    });
    hooks.add({HookPoint::MlpDown, write.layer}, [&layer_keys, &slot_delta, key_map, w, layer = write.layer](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      if (!layer_keys[w].defined())
        throw Error("optimize_values: layer " + std::to_string(layer) + "'s down projection ran without its mlp.hook_post key");
      const at::Tensor change = at::matmul(at::matmul(layer_keys[w].to(at::kFloat), key_map), slot_delta);
      layer_keys[w] = at::Tensor();
      return x + change.to(x.scalar_type());
    });
  }
  ForwardOptions forward;
  forward.attention_mask = batch.mask;
  forward.hooks = &hooks;

  OptimizedValues out;
  out.loss.assign(static_cast<size_t>(n), 0.0);
  out.target_prob.assign(static_cast<size_t>(n), 0.0);
  out.steps.assign(static_cast<size_t>(n), 0);
  at::Tensor active = at::ones({n}, f32);
  Adam adam;
  at::AutoGradMode grad(true);
  for (int64_t step = 0; step < options.steps; ++step) {
    delta.requires_grad_(true);
    slot_delta = delta.index_select(0, slot_value);
    at::Tensor logits = model.forward(batch.ids, forward).to(at::kFloat).flatten(0, 1);
    at::Tensor label_logp = at::log_softmax(logits.index_select(0, label_flat), -1).gather(1, label_token.unsqueeze(1)).squeeze(1);
    at::Tensor nll = at::zeros({n}, f32).index_add(0, label_request, -label_logp * label_weight);
    at::Tensor kl_logp = at::log_softmax(logits.index_select(0, kl_flat), -1);
    if (!kl_initial.defined()) kl_initial = kl_logp.detach();
    at::Tensor kl = (kl_logp.exp() * (kl_logp - kl_initial)).sum(-1);
    at::Tensor slot_decay = slot_delta.norm(2, 1) / initial.norm(2, 1).pow(2) * slot_weight;
    at::Tensor decay = options.weight_decay * at::zeros({n}, f32).index_add(0, slot_request, slot_decay);
    at::Tensor loss = nll + options.kl_factor * kl + decay;  // [N]
    if (leakage.defined()) {
      const at::Tensor per_slot = (at::matmul(leakage, slot_delta) * slot_delta).sum(1);  // [D]
      // Through the update, one update carries every request, and each request's loss counts
      // all of its leakage: the batch minimises the requests' mean loss plus the weight times the
      // whole update's leakage (for one request, ROME's term), so each vector feels the leakage
      // gradient n times as strongly as a lone edit would, and once weight x leakage exceeds the
      // stopping loss every request runs all its steps.
      loss = loss + options.leakage_weight * (through ? per_slot.sum().expand({n})
                                                      : at::zeros({n}, f32).index_add(0, slot_request, per_slot));
    }

    at::Tensor mean_prob = at::zeros({n}, f32).index_add(0, label_request, label_logp.detach().exp() * label_weight);
    const at::Tensor loss_cpu = loss.detach().to(at::kDouble).cpu(), prob_cpu = mean_prob.to(at::kDouble).cpu();
    for (int64_t r = 0; r < n; ++r) {
      out.loss[static_cast<size_t>(r)] = loss_cpu[r].item<double>();
      out.target_prob[static_cast<size_t>(r)] = prob_cpu[r].item<double>();
      // Coupled losses (through the update): a request that met the stopping loss can be pushed
      // back above it by the others' vectors, and then moves again.
      if (out.loss[static_cast<size_t>(r)] < options.stop_loss) active[r] = 0;
      else if (through) active[r] = 1;
    }
    if (active.sum().item<double>() == 0 || step == options.steps - 1) break;  // as coded: no update on the last step

    loss.sum().backward();
    at::Tensor g = delta.grad().detach();
    delta = delta.detach();
    // A shared vector keeps moving while any of its requests is still above the stopping loss.
    const at::Tensor value_active = at::zeros({values}, f32).index_add(0, slot_value, active.index_select(0, slot_request)).clamp_max(1);
    adam.step(delta, g, value_active, options.learning_rate);
    for (int64_t r = 0; r < n; ++r)
      if (active[r].item<double>() > 0) ++out.steps[static_cast<size_t>(r)];
    // Keep each change within clamp_norm_factor times the size of what it changes.
    at::Tensor limit = options.clamp_norm_factor * initial.index_select(0, first_slot).norm(2, 1, true);
    at::Tensor norms = delta.norm(2, 1, true);
    delta = at::where(norms > limit, delta * (limit / norms), delta);
  }
  out.initial = initial.cpu();
  out.delta = delta.detach().index_select(0, slot_value).cpu();
  out.values = values;
  return out;
}

FactTokens traced_fact_token(const Model& model, const EditRequest& request, int layer, uint64_t seed, int64_t count,
                             int64_t within_last) {
  const SubjectSpan span = locate_subject(model, request.prompt, request.subject);
  if (span.first == span.last || count < 1) return FactTokens{};
  const int64_t samples = 10, length = static_cast<int64_t>(span.ids.size());
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::tensor(span.ids, at::kLong).unsqueeze(0);

  // The clean run: the model's own answer and every position's hidden state after `layer`.
  std::map<std::string, at::Tensor> clean;
  Hooks read(model.arch().num_layers());
  read.cache({HookPoint::ResidPost, layer}, &clean);
  read.cache({HookPoint::Embed, -1}, &clean);
  ForwardOptions options;
  options.hooks = &read;
  options.last_position_only = true;
  const int64_t answer = model.forward(ids, options).argmax(-1).item<int64_t>();
  const at::Tensor hidden = clean.at(HookName{HookPoint::ResidPost, layer}.str());
  const at::Tensor embeds = clean.at("hook_embed");

  // Seeded noise on the subject's embeddings, 3 x the std of the embeddings (ROME's "s3").
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t span_length = span.last - span.first + 1;
  const double sigma = embeds.to(at::kFloat).std().item<double>();
  const at::Tensor noise = at::randn({samples, span_length, embeds.size(-1)}, generator, at::kFloat) * (3 * sigma);
  std::vector<std::pair<double, int64_t>> restored;  // (probability, offset from the end)
  for (int64_t offset = 0; offset < span_length; ++offset) {
    const int64_t position = span.first + offset;
    if (span_length - 1 - offset >= within_last) continue;
    Hooks patch(model.arch().num_layers());
    patch.add({HookPoint::Embed, -1}, [&](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      at::Tensor out = x.clone();
      out.narrow(1, span.first, span_length).add_(noise.to(x.device()).to(x.scalar_type()));
      return out;
    });
    patch.add({HookPoint::ResidPost, layer}, [&](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      at::Tensor out = x.clone();
      out.select(1, position).copy_(hidden.select(1, position).expand({x.size(0), x.size(-1)}));
      return out;
    });
    ForwardOptions traced;
    traced.hooks = &patch;
    traced.last_position_only = true;
    const double p = model.forward(ids.expand({samples, length}), traced).select(1, 0).to(at::kFloat).softmax(-1)
                         .select(1, answer).mean().item<double>();
    restored.emplace_back(p, span_length - 1 - offset);
  }
  // Most restoring first; ties go to the later token.
  std::stable_sort(restored.begin(), restored.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  FactTokens out;
  out.from_end.clear();
  for (size_t k = 0; k < restored.size() && static_cast<int64_t>(k) < count; ++k) out.from_end.push_back(restored[k].second);
  if (out.from_end.empty()) out.from_end.push_back(0);
  return out;
}

FactTokenChoice parse_fact_token(const std::string& name) {
  if (name == "last") return FactTokenChoice::Last;
  if (name == "traced") return FactTokenChoice::Traced;
  if (name == "subject") return FactTokenChoice::Subject;
  throw InputError("--fact-token \"" + name + "\": use last, traced or subject");
}

const char* fact_token_name(FactTokenChoice choice) {
  switch (choice) {
    case FactTokenChoice::Last: return "last";
    case FactTokenChoice::Traced: return "traced";
    case FactTokenChoice::Subject: return "subject";
  }
  return "last";
}

std::vector<int64_t> FactTokens::in(int64_t first, int64_t last) const {
  std::vector<int64_t> out;
  for (int64_t offset : from_end) out.push_back(std::max(first, last - offset));
  return out;
}

FactTokens choose_fact_tokens(const Model& model, const EditRequest& request, FactTokenChoice choice,
                              const std::vector<std::string>& contexts, int layer, uint64_t seed, int64_t traced_tokens) {
  if (choice == FactTokenChoice::Last) return FactTokens{};
  // As many tokens, from the end, as the subject has in every context and in the KL prompt: a
  // subject after a prefix can tokenise into fewer tokens than at the start of a text (a leading
  // space merges differently), and its tail is what the contexts share.
  int64_t shared = std::numeric_limits<int64_t>::max();
  auto shorten_to = [&](const std::string& prompt_template) {
    const SubjectSpan span = locate_subject(model, prompt_template, request.subject);
    shared = std::min(shared, span.last - span.first + 1);
  };
  for (const auto& context : contexts) shorten_to(fill(context, request.prompt));
  shorten_to("{} is a");
  if (choice == FactTokenChoice::Traced) return traced_fact_token(model, request, layer, seed, traced_tokens, shared);
  FactTokens out;
  out.from_end.clear();
  for (int64_t k = 0; k < shared; ++k) out.from_end.push_back(k);
  return out;
}

double mlp_output_power(const Model& model, int layer, const at::Tensor& second_moment) {
  const auto& down = model.arch().mlp_down_projection(layer);
  const at::Tensor w = stored_to_logical(model.weight(down.weight).to(at::kFloat).cpu(), down.layout);  // [H, I]
  // H x I^2 products, so float32: a normaliser needs no more.
  const double power = (at::matmul(w, second_moment.to(at::kFloat).cpu()) * w).sum().item<double>();
  if (!(power > 0))
    throw Error("layer " + std::to_string(layer) + ": the MLP output's second moment is not positive; cannot scale the leakage term");
  return power;
}

at::Tensor key_spread(const at::Tensor& second_moment, const at::Tensor& right) {
  const at::Tensor r = right.to(at::kDouble).cpu();
  return at::matmul(r.t(), at::matmul(second_moment.to(at::kDouble).cpu(), r));  // [P, P]
}

double expected_leakage(const at::Tensor& left, const at::Tensor& spread, double power) {
  const at::Tensor l = left.to(at::kDouble).cpu();
  return (at::matmul(l.t(), l) * spread).sum().item<double>() / power;
}

at::Tensor solve_symmetric(const at::Tensor& a, const at::Tensor& b, SolveReport* report) {
  at::Tensor a64 = a.to(at::kDouble).cpu();
  a64 = (a64 + a64.t()) / 2;
  const at::Tensor eigenvalues = at::linalg_eigvalsh(a64);
  const double smallest = eigenvalues.min().item<double>(), largest = eigenvalues.max().item<double>();
  SolveReport local;
  local.condition = smallest > 0 ? largest / smallest : std::numeric_limits<double>::infinity();
  // Rank-deficient or ill-conditioned statistics (fewer independent keys than the width, or a
  // near-constant unit): regularise just enough to make the system well posed.
  if (!(local.condition < 1e12)) {
    local.ridge = std::max(0.0, -smallest) + 1e-6 * std::max(largest, 1e-12);
    a64 = a64 + local.ridge * at::eye(a64.size(0), a64.options());
  }
  at::Tensor x = at::linalg_solve(a64, b.to(at::kDouble).cpu());
  if (!at::isfinite(x).all().item<bool>()) throw Error("solve produced non-finite values; refusing the edit");
  if (report) *report = local;
  return x;
}

}  // namespace graft::edits
