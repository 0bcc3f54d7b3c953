// graft crown-scan MODEL_DIR --prompt "The capital of {} is" --subject NAME [--expect TEXT]: per
// layer, how much the model's answer depends on the MLP at the subject's last token (ablation) and
// how much of it the clean hidden state / MLP outputs bring back under a corrupted subject (causal
// tracing); the picked layer is the one to edit.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "bindings/cli/commands.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/crown_scan.h"

namespace graft::cli {
namespace {

struct CrownScanArgs {
  std::string dir, prompt, subject, device = "cpu", dtype;
  std::optional<std::string> expect;
  edits::CrownScanOptions options;
  bool no_trace = false;
  bool json = false;
};

}  // namespace

Runner add_crown_scan_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("crown-scan",
                                 "Find the layer that holds a fact: MLP ablation and causal tracing per layer");
  auto args = std::make_shared<CrownScanArgs>();
  cmd->add_option("MODEL_DIR", args->dir, "Model directory")->required();
  cmd->add_option("--prompt,-p", args->prompt,
                  "Prompt with \"{}\" where the subject goes, e.g. \"The capital of {} is\"")
      ->required();
  cmd->add_option("--subject,-s", args->subject, "The subject that fills \"{}\"")->required();
  cmd->add_option("--expect,-e", args->expect,
                  "The answer to watch (default: the model's own top-1 answer); a leading space is added unless the "
                  "prompt ends in one; only its first token is scored");
  cmd->add_option("--samples", args->options.tracing.samples, "Corrupted copies of the prompt per traced forward")
      ->capture_default_str();
  cmd->add_option("--noise", args->options.tracing.noise, "Noise std as a multiple of the token embeddings' std")
      ->capture_default_str();
  cmd->add_option("--seed", args->options.tracing.seed, "Seed of the noise")->capture_default_str();
  cmd->add_option("--window", args->options.window,
                  "Layers restored together in the MLP-window trace (0: 10, at most half the depth)")
      ->capture_default_str();
  cmd->add_flag("--no-trace", args->no_trace, "Ablation only (one forward pass); the pick is then the ablation peak");
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32, bfloat16 or float16 (default: the checkpoint's)");
  cmd->add_flag("--json", args->json, "Print the result as JSON");
  return [args]() {
    LoadOptions load;
    load.device = args->device;
    if (!args->dtype.empty()) load.dtype = parse_dtype(args->dtype);
    const auto model = Model::load(args->dir, load);
    args->options.trace = !args->no_trace;
    const edits::CrownScanResult result = edits::crown_scan(*model, args->prompt, args->subject, args->expect,
                                                            args->options);
    if (args->json) {
      nlohmann::json out = edits::to_json(result);
      out["model"] = args->dir;
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::printf("%s", edits::format_crown_scan(result).c_str());
    }
    return 0;
  };
}

}  // namespace graft::cli
