// graft eval MODEL_DIR --requests FILE: CounterFact-style scores (efficacy, paraphrase,
// neighbourhood; success rates, probability margins, top-1) of the model as it is; with --method,
// of the model before and after editing it: ROME one request at a time on the unedited model (the
// published protocol), MEMIT all requests in one batch.
#include <cstdio>
#include <optional>
#include <nlohmann/json.hpp>

#include "bindings/cli/commands.h"
#include "bindings/cli/editor_options.h"
#include "core/error.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/evaluate.h"
#include "edits/request.h"
#include "edits/weight_update.h"
#include "edits/stats.h"

namespace graft::cli {
namespace {

struct EvalArgs {
  std::string dir, requests, device = "cpu", dtype;
  int64_t limit = 0;
  edits::EvaluateOptions options;  // the defaults the flags start from
  bool json = false;
  bool per_request = false;
  EditorArgs editor;
  bool edit = false;  // --method given
};

// Edits then scores: returns the after-edit result; `seconds_editing` is the editors' own time.
edits::EvaluationResult edit_and_evaluate(Model& model, const std::vector<edits::EditRequest>& requests,
                                          const EvalArgs& args, const edits::EvaluateOptions& options,
                                          double* seconds_editing) {
  const auto stats = edits::KeyStatistics::load(args.editor.stats, model);
  const Editor editor = make_editor(args.editor, model, requests);
  if (editor.method == "memit") {
    edits::EditOutcome outcome = edits::memit(model, requests, stats, editor.memit);
    *seconds_editing = outcome.seconds();
    edits::TemporaryUpdates applied(model);
    for (const auto& update : outcome.updates) applied.add(update);
    return edits::evaluate(model, requests, options);
  }
  auto progress = [&](size_t i, const edits::EvaluationResult& one) {
    std::fprintf(stderr, "\r[%zu/%zu] %s: efficacy %.0f%%, paraphrase %.0f%%, neighborhood %.0f%%   ", i + 1,
                 requests.size(), requests[i].subject.c_str(), 100 * one.efficacy.success, 100 * one.paraphrase.success,
                 100 * one.neighborhood.success);
    if (i + 1 == requests.size()) std::fprintf(stderr, "\n");
  };
  edits::EditOutcome editing;
  edits::EvaluationResult result = edits::evaluate_rome(model, requests, stats, editor.rome, progress, options,
                                                        &editing);
  *seconds_editing = editing.seconds();
  return result;
}

}  // namespace

Runner add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "Score the model on edit requests (CounterFact metrics)");
  auto args = std::make_shared<EvalArgs>();
  cmd->add_option("MODEL_DIR", args->dir, "Model directory")->required();
  cmd->add_option("--requests,-r", args->requests, "JSON list of edit requests (CounterFact style)")->required();
  cmd->add_option("--limit,-n", args->limit, "Evaluate only the first N requests (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", args->options.batch_size, "Sequences per forward pass (0: automatic)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32, bfloat16 or float16 (default: the checkpoint's)");
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->add_flag("--per-request", args->per_request, "With --json: add every request's per-prompt probabilities");
  cmd->add_option(
         "--method", args->editor.method,
         "Edit first and score before and after: rome (one request at a time, restored between) or memit (all at once)")
      ->check(CLI::IsMember({"rome", "memit"}))
      ->each([args](const std::string&) { args->edit = true; });
  args->editor.add_options(cmd, /*with_method=*/false);
  return [args]() {
    if (args->edit) args->editor.check_before_work();
    std::vector<edits::EditRequest> requests = edits::load_requests(args->requests);
    if (args->limit > 0 && static_cast<size_t>(args->limit) < requests.size())
      requests.resize(static_cast<size_t>(args->limit));
    LoadOptions load;
    load.device = args->device;
    if (!args->dtype.empty()) load.dtype = parse_dtype(args->dtype);
    const auto model = Model::load(args->dir, load);
    const edits::EvaluateOptions& options = args->options;
    const edits::EvaluationResult before = edits::evaluate(*model, requests, options);
    std::optional<edits::EvaluationResult> after;
    double seconds_editing = 0;
    if (args->edit) after = edit_and_evaluate(*model, requests, *args, options, &seconds_editing);
    if (args->json) {
      nlohmann::json out = edits::to_json(after ? *after : before, args->per_request);
      out["model"] = args->dir;
      out["requests_file"] = args->requests;
      if (after) {
        out["before"] = edits::to_json(before, false)["summary"];
        out["method"] = args->editor.method;
        out["seconds_editing"] = seconds_editing;
      }
      std::printf("%s\n", out.dump(2).c_str());
    } else if (after) {
      std::printf("%s (%s), %zu request(s), editing %.1f s\n\n%s", args->editor.method.c_str(),
                  args->editor.method == "rome" ? "one edit at a time" : "all edits at once", requests.size(),
                  seconds_editing, edits::format_comparison(before, *after).c_str());
    } else {
      std::printf("%s", edits::format_evaluation(before).c_str());
    }
    return 0;
  };
}

}  // namespace graft::cli
