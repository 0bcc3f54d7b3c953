// graft run MODEL_DIR --prompt "...": the continuation, or the top-K next tokens with probabilities.
#include <cstdio>

#include "bindings/cli/commands.h"
#include "bindings/cli/progress.h"
#include "core/error.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/tensor.h"
#include "core/tokenizer/tokenizer.h"

namespace graft::cli {
namespace {

struct RunArgs {
  std::string dir, prompt, device = "cpu", dtype;
  int64_t max_new_tokens = 16;
  int64_t top_k_show = 0;
  double temperature = 0.0, top_p = 1.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
};

std::string printable(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

// The text `continuation` adds after `prompt`, spaces included: decoding a token alone would drop
// the leading space a Metaspace tokenizer strips at the start of a text.
std::string decode_after(const Tokenizer& tokenizer, std::vector<int64_t> prompt,
                         const std::vector<int64_t>& continuation) {
  const std::string before = tokenizer.decode(prompt, /*skip_special_tokens=*/true);
  prompt.insert(prompt.end(), continuation.begin(), continuation.end());
  const std::string after = tokenizer.decode(prompt, /*skip_special_tokens=*/true);
  return after.rfind(before, 0) == 0 ? after.substr(before.size()) : tokenizer.decode(continuation, true);
}

std::vector<int64_t> to_vector(const at::Tensor& ids) {
  at::Tensor flat = ids.flatten().to(at::kLong).cpu().contiguous();
  return {flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel()};
}

void show_top_k(const Model& model, const at::Tensor& ids, int64_t k) {
  const std::vector<int64_t> prompt = to_vector(ids);
  ForwardOptions options;
  options.last_position_only = true;
  at::Tensor probabilities = model.forward(ids, options).select(1, 0).select(0, 0).to(at::kFloat).softmax(-1).cpu();
  auto [values, indices] = probabilities.topk(std::min<int64_t>(k, probabilities.size(0)));
  const Tokenizer& tokenizer = model.require_tokenizer();
  std::printf("%4s  %8s  %7s  %s\n", "rank", "prob", "id", "token");
  for (int64_t r = 0; r < values.size(0); ++r) {
    const int64_t id = indices[r].item<int64_t>();
    std::printf("%4lld  %8.4f  %7lld  \"%s\"\n", static_cast<long long>(r + 1), values[r].item<double>(),
                static_cast<long long>(id), printable(decode_after(tokenizer, prompt, {id})).c_str());
  }
}

void show_continuation(const Model& model, const at::Tensor& ids, const RunArgs& args) {
  GenerateOptions options;
  options.max_new_tokens = args.max_new_tokens;
  options.temperature = args.temperature;
  options.top_k = args.top_k;
  options.top_p = args.top_p;
  options.seed = args.seed;
  Progress progress("generating", args.max_new_tokens, "tok");
  options.on_step = [&](int64_t done) { progress.update(done); };
  Generation out = generate(model, ids, options);
  progress.finish();
  const int64_t prompt_length = ids.size(1);
  const std::vector<int64_t> added = to_vector(out.ids.select(0, 0).narrow(0, prompt_length, out.generated));
  std::printf("%s%s\n", args.prompt.c_str(), decode_after(model.require_tokenizer(), to_vector(ids), added).c_str());
}

}  // namespace

Runner add_run_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Continue a prompt, or show the most likely next tokens");
  auto args = std::make_shared<RunArgs>();
  cmd->add_option("MODEL_DIR", args->dir, "Model directory")->required();
  cmd->add_option("--prompt,-p", args->prompt, "Prompt text (BOS is added when the tokenizer config asks)")->required();
  cmd->add_option("--max-new-tokens,-n", args->max_new_tokens, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k-show", args->top_k_show, "Instead of generating, show the K most likely next tokens")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32, bfloat16 or float16 (default: the checkpoint's)");
  cmd->add_option("--temperature", args->temperature, "0 = greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", args->top_k, "Sample from the K most likely tokens (0 = all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", args->top_p, "Nucleus sampling mass")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", args->seed, "Sampling seed")->capture_default_str();
  return [args]() {
    LoadOptions load;
    load.device = args->device;
    if (!args->dtype.empty()) load.dtype = parse_dtype(args->dtype);
    const auto model = Model::load(args->dir, load);
    const Tokenizer& tokenizer = model->require_tokenizer();
    std::vector<int64_t> ids = tokenizer.encode(args->prompt, /*add_special_tokens=*/true);
    if (ids.empty()) throw InputError("--prompt: encodes to no tokens");
    at::Tensor input = at::tensor(ids, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
    if (args->top_k_show > 0) show_top_k(*model, input, args->top_k_show);
    else show_continuation(*model, input, *args);
    return 0;
  };
}

}  // namespace graft::cli
