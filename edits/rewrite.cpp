#include "edits/rewrite.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

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

// One-hot [B, S, 1] marking each row's position: where a vector is added or read.
at::Tensor position_mask(const std::vector<int64_t>& positions, int64_t length, const at::TensorOptions& options) {
  at::Tensor mask = at::zeros({static_cast<int64_t>(positions.size()), length, 1}, options);
  for (size_t b = 0; b < positions.size(); ++b) mask[static_cast<int64_t>(b)][positions[b]][0] = 1;
  return mask;
}

// The rows of the value-optimisation batch: for each request, one rewriting row per context (prompt
// then target tokens but the last) and one KL row ("{subject} is a").
struct RewriteRows {
  std::vector<std::vector<int64_t>> tokens;
  std::vector<int64_t> request;     // which request each row belongs to
  std::vector<int64_t> subject;     // subject's last token in each row
  std::vector<bool> is_kl;
  std::vector<int64_t> bare;        // per request: its bare-prompt row (the "{}" context)
  // Teacher-forced label positions: (row, position, token).
  std::vector<int64_t> label_row, label_position, label_token;
};

FactToken token_for(const std::vector<FactToken>& tokens, size_t request) {
  return tokens.empty() ? FactToken{} : tokens.at(request);
}

RewriteRows rewrite_rows(const Model& model, const std::vector<EditRequest>& requests, const std::vector<std::string>& contexts,
                         const std::vector<FactToken>& tokens) {
  RewriteRows rows;
  for (size_t r = 0; r < requests.size(); ++r) {
    const EditRequest& request = requests[r];
    const FactToken token = token_for(tokens, r);
    for (size_t c = 0; c < contexts.size(); ++c) {
      const std::string prompt_template = fill(contexts[c], request.prompt);
      const SubjectSpan span = locate_subject(model, prompt_template, request.subject);
      std::string filled = prompt_template;
      filled.replace(filled.find("{}"), 2, request.subject);
      const PromptWithTarget pt = split_target(model, filled, request.target_new);
      const int64_t position = token.in(span.first, span.last);
      if (position >= static_cast<int64_t>(pt.prompt.size()))
        throw InputError("request \"" + filled + "\": the target merges with the subject's last token");
      std::vector<int64_t> tokens = pt.prompt;
      tokens.insert(tokens.end(), pt.target.begin(), pt.target.end() - 1);
      const int64_t row = static_cast<int64_t>(rows.tokens.size());
      for (size_t j = 0; j < pt.target.size(); ++j) {
        rows.label_row.push_back(row);
        rows.label_position.push_back(static_cast<int64_t>(pt.prompt.size() + j) - 1);
        rows.label_token.push_back(pt.target[j]);
      }
      if (contexts[c] == "{}") rows.bare.push_back(row);
      rows.tokens.push_back(std::move(tokens));
      rows.request.push_back(static_cast<int64_t>(r));
      rows.subject.push_back(position);
      rows.is_kl.push_back(false);
    }
    const SubjectSpan kl = locate_subject(model, "{} is a", request.subject);
    rows.tokens.push_back(kl.ids);
    rows.request.push_back(static_cast<int64_t>(r));
    rows.subject.push_back(token.in(kl.first, kl.last));
    rows.is_kl.push_back(true);
  }
  if (rows.bare.size() != requests.size()) throw Error("context templates must start with the bare \"{}\"");
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

std::vector<at::Tensor> subject_activations(const Model& model, const std::vector<EditRequest>& requests,
                                            const std::vector<std::string>& contexts, const std::vector<HookName>& points,
                                            const std::vector<FactToken>& tokens) {
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> positions;
  for (size_t r = 0; r < requests.size(); ++r)
    for (const auto& context : contexts) {
      const SubjectSpan span = locate_subject(model, fill(context, requests[r].prompt), requests[r].subject);
      rows.push_back(span.ids);
      positions.push_back(token_for(tokens, r).in(span.first, span.last));
    }
  const Batch batch = pad_right(model, rows);
  std::vector<at::Tensor> captured(points.size());
  Hooks hooks(model.arch().num_layers());
  const at::Tensor index = at::tensor(positions, at::kLong).to(model.device());
  for (size_t p = 0; p < points.size(); ++p)
    hooks.add(points[p], [&captured, &index, p](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
      at::Tensor rows_index = at::arange(x.size(0), index.options());
      captured[p] = x.flatten(0, 1).index_select(0, rows_index * x.size(1) + index).detach();
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
  const int64_t n = static_cast<int64_t>(requests.size()), c = static_cast<int64_t>(contexts.size());
  for (auto& t : captured) t = t.to(at::kFloat).reshape({n, c, -1});
  return captured;
}

OptimizedValues optimize_values(const Model& model, const std::vector<EditRequest>& requests,
                                const std::vector<std::string>& contexts, const ValueOptions& options,
                                const std::vector<FactToken>& tokens) {
  const RewriteRows rows = rewrite_rows(model, requests, contexts, tokens);
  const Batch batch = pad_right(model, rows.tokens);
  const auto device = model.device();
  const int64_t n = static_cast<int64_t>(requests.size()), hidden = model.spec().hidden_size;
  const int64_t length = batch.ids.size(1);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);

  const at::Tensor add_at = position_mask(rows.subject, length, f32);                   // [B, S, 1]
  const at::Tensor row_request = at::tensor(rows.request, at::kLong).to(device);        // [B]
  const at::Tensor bare_rows = at::tensor(rows.bare, at::kLong).to(device);             // [N]
  const at::Tensor subject_index = at::tensor(rows.subject, at::kLong).to(device);      // [B]
  const at::Tensor label_flat = (at::tensor(rows.label_row, at::kLong) * length + at::tensor(rows.label_position, at::kLong)).to(device);
  const at::Tensor label_token = at::tensor(rows.label_token, at::kLong).to(device);
  const at::Tensor label_request = row_request.index_select(0, at::tensor(rows.label_row, at::kLong).to(device));
  std::vector<int64_t> kl_rows_v, rewrite_count(static_cast<size_t>(n), 0);
  for (size_t b = 0; b < rows.tokens.size(); ++b) {
    if (rows.is_kl[b]) kl_rows_v.push_back(static_cast<int64_t>(b));
    else ++rewrite_count[static_cast<size_t>(rows.request[b])];
  }
  const at::Tensor kl_flat = (at::tensor(kl_rows_v, at::kLong).to(device) * length).add(subject_index.index_select(0, at::tensor(kl_rows_v, at::kLong).to(device)));
  // Each label counts 1 / (target length) / (rows of its request): the mean over tokens, then rows.
  at::Tensor label_weight = at::zeros({static_cast<int64_t>(rows.label_row.size())}, f32);
  {
    std::vector<int64_t> per_row(rows.tokens.size(), 0);
    for (int64_t r : rows.label_row) ++per_row[static_cast<size_t>(r)];
    for (size_t j = 0; j < rows.label_row.size(); ++j) {
      const size_t row = static_cast<size_t>(rows.label_row[j]);
      label_weight[static_cast<int64_t>(j)] = 1.0 / static_cast<double>(per_row[row]) /
                                              static_cast<double>(rewrite_count[static_cast<size_t>(rows.request[row])]);
    }
  }

  at::Tensor delta = at::zeros({n, hidden}, f32);
  at::Tensor initial;        // captured on the first pass
  at::Tensor kl_initial;     // log-probabilities at the KL rows before any change
  Hooks hooks(model.arch().num_layers());
  hooks.add(options.point, [&](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
    if (!initial.defined()) {
      at::Tensor flat = x.detach().flatten(0, 1).to(at::kFloat);
      initial = flat.index_select(0, bare_rows * length + subject_index.index_select(0, bare_rows));
    }
    at::Tensor per_row = delta.index_select(0, row_request).unsqueeze(1);  // [B, 1, H]
    return x + (add_at * per_row).to(x.scalar_type());
  });
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
    at::Tensor logits = model.forward(batch.ids, forward).to(at::kFloat).flatten(0, 1);
    at::Tensor label_logp = at::log_softmax(logits.index_select(0, label_flat), -1).gather(1, label_token.unsqueeze(1)).squeeze(1);
    at::Tensor nll = at::zeros({n}, f32).index_add(0, label_request, -label_logp * label_weight);
    at::Tensor kl_logp = at::log_softmax(logits.index_select(0, kl_flat), -1);
    if (!kl_initial.defined()) kl_initial = kl_logp.detach();
    at::Tensor kl = (kl_logp.exp() * (kl_logp - kl_initial)).sum(-1);
    at::Tensor decay = options.weight_decay * delta.norm(2, 1) / initial.norm(2, 1).pow(2);
    at::Tensor loss = nll + options.kl_factor * kl + decay;  // [N]

    at::Tensor mean_prob = at::zeros({n}, f32).index_add(0, label_request, label_logp.detach().exp() * label_weight);
    auto loss_cpu = loss.detach().cpu();
    auto prob_cpu = mean_prob.cpu();
    for (int64_t r = 0; r < n; ++r) {
      out.loss[static_cast<size_t>(r)] = loss_cpu[r].item<double>();
      out.target_prob[static_cast<size_t>(r)] = prob_cpu[r].item<double>();
      if (loss_cpu[r].item<double>() < options.stop_loss) active[r] = 0;
    }
    if (active.sum().item<double>() == 0 || step == options.steps - 1) break;  // as coded: no update on the last step

    loss.sum().backward();
    at::Tensor g = delta.grad().detach();
    delta = delta.detach();
    adam.step(delta, g, active, options.learning_rate);
    for (int64_t r = 0; r < n; ++r)
      if (active[r].item<double>() > 0) ++out.steps[static_cast<size_t>(r)];
    // Keep each change within clamp_norm_factor times the size of what it changes.
    at::Tensor limit = options.clamp_norm_factor * initial.norm(2, 1, true);
    at::Tensor norms = delta.norm(2, 1, true);
    delta = at::where(norms > limit, delta * (limit / norms), delta);
  }
  out.initial = initial.cpu();
  out.delta = delta.detach().cpu();
  return out;
}

FactToken traced_fact_token(const Model& model, const EditRequest& request, int layer, uint64_t seed) {
  const SubjectSpan span = locate_subject(model, request.prompt, request.subject);
  if (span.first == span.last) return FactToken{0};
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
  double best = -1;
  int64_t best_offset = span_length - 1;
  for (int64_t offset = 0; offset < span_length; ++offset) {
    const int64_t position = span.first + offset;
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
    if (p > best) best = p, best_offset = offset;
  }
  return FactToken{best_offset};
}

TemporaryUpdates::~TemporaryUpdates() {
  for (auto& [name, original] : originals_) model_.weight(name).copy_(original);
}

void TemporaryUpdates::add(const TensorUpdate& update) {
  at::Tensor& weight = model_.weight(update.tensor);
  if (!originals_.count(update.tensor)) originals_.emplace(update.tensor, weight.clone());
  at::Tensor delta = update.dense.defined() ? update.dense : at::matmul(update.left, update.right.t());
  if (model_.arch().mlp_down_projection(update.layer).layout == arch::WeightLayout::InOut) delta = delta.t();
  weight.add_(delta.to(weight.scalar_type()).to(weight.device()));
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
