// graft eval MODEL_DIR --requests FILE: CounterFact-style scores (efficacy, paraphrase,
// neighbourhood; success rates, probability margins, top-1) of the model as it is.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "bindings/cli/commands.h"
#include "core/error.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/evaluate.h"
#include "edits/request.h"

namespace graft::cli {
namespace {

struct EvalArgs {
  std::string dir, requests, device = "cpu", dtype;
  int64_t limit = 0;
  int64_t batch_size = 0;
  bool json = false;
  bool per_request = false;
};

}  // namespace

Runner add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Score the model on edit requests (CounterFact metrics)");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option("MODEL_DIR", args->dir, "Model directory")->required();
  cmd->add_option("--requests,-r", args->requests, "JSON list of edit requests (CounterFact style)")->required();
  cmd->add_option("--limit,-n", args->limit, "Evaluate only the first N requests (0: all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", args->batch_size, "Sequences per forward pass (0: automatic)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32, bfloat16 or float16 (default: the checkpoint's)");
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->add_flag("--per-request", args->per_request, "With --json: add every request's per-prompt probabilities");
  return [args]() {
    std::vector<edits::EditRequest> requests = edits::load_requests(args->requests);
    if (args->limit > 0 && static_cast<size_t>(args->limit) < requests.size()) requests.resize(static_cast<size_t>(args->limit));
    LoadOptions load;
    load.device = args->device;
    if (!args->dtype.empty()) load.dtype = parse_dtype(args->dtype);
    const auto model = Model::load(args->dir, load);
    edits::EvaluateOptions options;
    options.batch_size = args->batch_size;
    const edits::EvaluationResult result = edits::evaluate(*model, requests, options);
    if (args->json) {
      nlohmann::json out = edits::to_json(result, args->per_request);
      out["model"] = args->dir;
      out["requests_file"] = args->requests;
      std::printf("%s\n", out.dump(2).c_str());
    } else {
      std::printf("%s", edits::format_evaluation(result).c_str());
    }
    return 0;
  };
}

}  // namespace graft::cli
