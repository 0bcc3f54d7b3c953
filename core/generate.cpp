#include "core/generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"

namespace graft {
namespace {

void check_options(const GenerateOptions& o) {
  if (o.max_new_tokens < 0) throw InputError("max_new_tokens: must be >= 0");
  if (o.temperature < 0) throw InputError("temperature: must be >= 0");
  if (o.top_k < 0) throw InputError("top_k: must be >= 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) throw InputError("top_p: must be in (0, 1]");
}

// HF order: temperature, then top-k, then top-p (the smallest set whose probability reaches p,
// always keeping the most likely token).
at::Tensor filtered_log_probs(const at::Tensor& logits, const GenerateOptions& o) {
  at::Tensor scores = logits.to(at::kFloat) / o.temperature;
  const double minus_inf = -std::numeric_limits<double>::infinity();
  if (o.top_k > 0 && o.top_k < scores.size(-1)) {
    at::Tensor kth = std::get<0>(scores.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);
    scores = scores.masked_fill(scores < kth, minus_inf);
  }
  if (o.top_p < 1.0) {
    auto [sorted, order] = scores.sort(-1, /*descending=*/false);
    at::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
    at::Tensor drop_sorted = cumulative <= (1 - o.top_p);
    drop_sorted.narrow(-1, drop_sorted.size(-1) - 1, 1).fill_(false);
    at::Tensor drop = drop_sorted.scatter(-1, order, drop_sorted);
    scores = scores.masked_fill(drop, minus_inf);
  }
  return scores;
}

}  // namespace

at::Tensor select_next_tokens(const at::Tensor& logits, const GenerateOptions& options, at::Generator& generator) {
  if (options.temperature == 0.0) return logits.argmax(-1);
  at::Tensor probabilities = filtered_log_probs(logits, options).softmax(-1).cpu();
  return at::multinomial(probabilities, 1, /*replacement=*/false, generator).squeeze(-1).to(logits.device());
}

Generation generate(const Model& model, const at::Tensor& input_ids, const GenerateOptions& options,
                    const at::Tensor& attention_mask) {
  check_options(options);
  if (input_ids.dim() != 2) throw InputError("input_ids: expected [batch, sequence]");
  const auto device = model.device();
  const int64_t batch = input_ids.size(0);
  at::Tensor ids = input_ids.to(device).to(at::kLong);
  at::Tensor mask = attention_mask.defined() ? attention_mask.to(device).to(at::kLong) : at::ones_like(ids);

  std::vector<int64_t> stops = options.stop_tokens ? *options.stop_tokens : model.spec().eos_token_ids;
  at::Tensor stop_ids = at::tensor(stops, at::TensorOptions().dtype(at::kLong)).to(device);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);

  KVCache cache(model, batch, ids.size(1) + options.max_new_tokens);
  ForwardOptions forward;
  forward.cache = &cache;
  forward.last_position_only = true;
  forward.attention_mask = mask;
  at::Tensor logits = model.forward(ids, forward);

  at::Tensor finished = at::zeros({batch}, at::TensorOptions().dtype(at::kBool).device(device));
  Generation out;
  std::vector<at::Tensor> pieces{ids}, masks{mask};
  for (int64_t step = 0; step < options.max_new_tokens; ++step) {
    at::Tensor next = select_next_tokens(logits.select(1, 0), options, generator);
    at::Tensor last = pieces.back().select(1, pieces.back().size(1) - 1);
    // A finished row repeats its stop token and is masked out from then on.
    next = at::where(finished, last, next);
    at::Tensor step_mask = finished.logical_not().to(at::kLong).unsqueeze(1);
    pieces.push_back(next.unsqueeze(1));
    masks.push_back(step_mask);
    ++out.generated;
    if (options.on_step) options.on_step(out.generated);
    if (stop_ids.numel() > 0) finished = finished.logical_or(at::isin(next, stop_ids));
    if (finished.all().item<bool>() || step + 1 == options.max_new_tokens) break;
    forward.attention_mask = step_mask;
    logits = model.forward(next.unsqueeze(1), forward);
  }
  out.ids = at::cat(pieces, 1);
  out.attention_mask = at::cat(masks, 1);
  return out;
}

}  // namespace graft
