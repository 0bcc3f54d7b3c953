// graft edit MODEL --method rome|memit --requests FILE --layers ... --stats STATS -o PATCH
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "bindings/cli/commands.h"
#include "bindings/cli/editor_options.h"
#include "core/error.h"
#include "core/model.h"
#include "edits/evaluate.h"
#include "edits/memit.h"
#include "edits/rome.h"

namespace graft::cli {
namespace {

struct EditArgs {
  std::string dir, requests, output, device = "cpu";
  EditorArgs editor;
  int64_t limit = 0;
  bool evaluate = false, dry_run = false;
};

int run_edit(const EditArgs& a) {
  if (!a.dry_run) a.editor.check_before_work();
  LoadOptions load;
  load.device = a.device;
  const auto model = Model::load(a.dir, load);
  auto requests = edits::load_requests(a.requests);
  if (a.limit > 0 && static_cast<size_t>(a.limit) < requests.size()) requests.resize(static_cast<size_t>(a.limit));
  if (a.dry_run) {
    const Editor editor = make_editor(a.editor, *model, requests);
    std::printf("%s\n", nlohmann::json{{"method", editor.method}, {"options", editor.options_json()}}.dump(2).c_str());
    return 0;
  }
  const auto stats = edits::KeyStatistics::load(a.editor.stats, *model);
  const Editor editor = make_editor(a.editor, *model, requests);
  std::optional<edits::EvaluationResult> before;
  if (a.evaluate) before = edits::evaluate(*model, requests);

  // Several ROME requests are applied one after another (each sees the earlier ones), as a
  // sequence of edits would be; MEMIT edits them all at once.
  edits::EditOutcome outcome = editor.method == "rome" ? edits::rome_sequential(*model, requests, stats, editor.rome)
                                                       : edits::memit(*model, requests, stats, editor.memit);
  std::printf("%s: %zu request(s), %.2f s (templates %.2f, keys %.2f, v* optimisation %.2f, solve %.2f)\n",
              editor.method.c_str(), requests.size(), outcome.seconds(), outcome.seconds_templates,
              outcome.seconds_keys, outcome.seconds_values, outcome.seconds_solve);
  const edits::Patch patch = edits::make_patch(*model, std::move(outcome), editor.method, requests);
  patch.save(a.output);
  std::printf("wrote %s (%zu tensor update(s), checksum %s)\n", a.output.c_str(), patch.entries().size(),
              patch.checksum().substr(0, 16).c_str());
  if (before) {
    edits::PatchStack stack(*model);
    stack.apply(patch);
    const auto after = edits::evaluate(*model, requests);
    std::printf("\n%s", edits::format_comparison(*before, after).c_str());
  }
  return 0;
}

}  // namespace

Runner add_edit_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("edit", "Rewrite facts with ROME or MEMIT and write the change as a patch file");
  auto a = std::make_shared<EditArgs>();
  cmd->add_option("MODEL_DIR", a->dir, "Model directory")->required();
  cmd->add_option("--requests", a->requests, "Edit requests (JSON list: prompt with {}, subject, target_new)")
      ->required();
  auto* output = cmd->add_option("-o,--output", a->output, "Patch file to write");
  cmd->add_option("--limit", a->limit, "Use only the first N requests")->check(CLI::NonNegativeNumber);
  a->editor.add_options(cmd, /*with_method=*/true);
  cmd->add_flag("--evaluate", a->evaluate, "Print CounterFact-style scores before and after");
  cmd->add_flag("--dry-run", a->dry_run,
                "Print the editor's resolved options as JSON (every default filled in) and edit nothing");
  cmd->add_option("--device", a->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  return [a, output]() {
    if (!a->dry_run && output->count() == 0) throw InputError("--output: the patch file to write is required");
    return run_edit(*a);
  };
}

}  // namespace graft::cli
