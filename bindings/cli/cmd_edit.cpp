// graft edit MODEL --method rome|memit --requests FILE --layers ... --stats STATS -o PATCH
#include <cstdio>
#include <fstream>

#include "bindings/cli/commands.h"
#include "core/error.h"
#include "core/model.h"
#include "edits/crown_scan.h"
#include "edits/evaluate.h"
#include "edits/memit.h"
#include "edits/rome.h"

namespace graft::cli {

// "3", "1,2,5", "2-5" or a mix; empty text: no layers.
std::vector<int> parse_layers(const std::string& text) {
  std::vector<int> layers;
  size_t start = 0;
  while (start < text.size()) {
    const size_t comma = text.find(',', start);
    const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    try {
      const size_t dash = part.find('-', 1);
      size_t used = 0;
      if (dash == std::string::npos) {
        layers.push_back(std::stoi(part, &used));
        if (used != part.size()) throw std::invalid_argument(part);
      } else {
        const int from = std::stoi(part.substr(0, dash)), to = std::stoi(part.substr(dash + 1));
        if (to < from) throw std::invalid_argument(part);
        for (int l = from; l <= to; ++l) layers.push_back(l);
      }
    } catch (const std::exception&) {
      throw InputError("--layers \"" + text + "\": expected layer numbers like 3, 1,2,5 or 2-5");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return layers;
}

namespace {

struct EditArgs {
  std::string dir, method = "rome", requests, layers, stats, output, device = "cpu", fact_token = "last";
  int64_t limit = 0, steps = 0;
  double learning_rate = 0, clamp = 0, kl_factor = -1, covariance_weight = 15000;
  bool original_keys = false, evaluate = false;
};

int run_edit(const EditArgs& a) {
  LoadOptions load;
  load.device = a.device;
  const auto model = Model::load(a.dir, load);
  auto requests = edits::load_requests(a.requests);
  if (a.limit > 0 && static_cast<size_t>(a.limit) < requests.size()) requests.resize(static_cast<size_t>(a.limit));
  const auto stats = edits::KeyStatistics::load(a.stats, *model);
  std::vector<int> layers = parse_layers(a.layers);
  if (layers.empty() && a.method == "rome") {
    // The layer where the first request's fact lives, over the whole depth (crown-scan's pick).
    const auto& r = requests.front();
    layers.push_back(edits::crown_scan(*model, r.prompt, r.subject, r.target_true).picked_layer);
    std::fprintf(stderr, "graft: crown-scan picked layer %d\n", layers.front());
  }
  auto tune = [&](edits::ValueOptions& v) {
    if (a.steps > 0) v.steps = a.steps;
    if (a.learning_rate > 0) v.learning_rate = a.learning_rate;
    if (a.clamp > 0) v.clamp_norm_factor = a.clamp;
    if (a.kl_factor >= 0) v.kl_factor = a.kl_factor;
  };
  std::optional<edits::EvaluationResult> before;
  if (a.evaluate) before = edits::evaluate(*model, requests);

  edits::EditOutcome outcome;
  if (a.method == "rome") {
    if (layers.size() != 1) throw InputError("--layers: ROME edits one layer");
    edits::RomeOptions options;
    options.layer = layers.front();
    options.consistent_keys = !a.original_keys;
    options.fact_token = edits::parse_fact_token(a.fact_token);
    tune(options.value);
    outcome = edits::rome_sequential(*model, requests, stats, options);
  } else if (a.method == "memit") {
    edits::MemitOptions options;
    options.layers = layers;
    options.covariance_weight = a.covariance_weight;
    options.fact_token = edits::parse_fact_token(a.fact_token);
    tune(options.value);
    outcome = edits::memit(*model, requests, stats, options);
  } else {
    throw InputError("--method \"" + a.method + "\": use rome or memit");
  }
  const double seconds = outcome.seconds_templates + outcome.seconds_keys + outcome.seconds_values + outcome.seconds_solve;
  std::printf("%s: %zu request(s), %.2f s (templates %.2f, keys %.2f, v* optimisation %.2f, solve %.2f)\n",
              a.method.c_str(), requests.size(), seconds, outcome.seconds_templates, outcome.seconds_keys,
              outcome.seconds_values, outcome.seconds_solve);
  const edits::Patch patch = edits::make_patch(*model, std::move(outcome), a.method, requests);
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
  cmd->add_option("--method", a->method, "rome or memit")->capture_default_str()->check(CLI::IsMember({"rome", "memit"}));
  cmd->add_option("--requests", a->requests, "Edit requests (JSON list: prompt with {}, subject, target_new)")->required();
  cmd->add_option("--layers", a->layers, "Layers to edit (ROME: one; default: crown-scan's pick. MEMIT: e.g. 0-2)");
  cmd->add_option("--stats", a->stats, "Statistics from `graft stats` holding those layers")->required();
  cmd->add_option("-o,--output", a->output, "Patch file to write")->required();
  cmd->add_option("--limit", a->limit, "Use only the first N requests")->check(CLI::NonNegativeNumber);
  cmd->add_option("--fact-token", a->fact_token, "last (published) or traced (the subject token causal tracing picks)")
      ->capture_default_str()
      ->check(CLI::IsMember({"last", "traced"}));
  cmd->add_option("--steps", a->steps, "Value-optimisation steps (default: published)")->check(CLI::PositiveNumber);
  cmd->add_option("--lr", a->learning_rate, "Value-optimisation learning rate (default 0.5)")->check(CLI::PositiveNumber);
  cmd->add_option("--clamp", a->clamp, "Norm clamp factor (default ROME 4, MEMIT 0.75)")->check(CLI::PositiveNumber);
  cmd->add_option("--kl-factor", a->kl_factor, "KL weight (default 0.0625)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--lambda", a->covariance_weight, "MEMIT covariance weight")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--original-keys", a->original_keys, "ROME as originally coded (bare-prompt key in the constraint)");
  cmd->add_flag("--evaluate", a->evaluate, "Print CounterFact-style scores before and after");
  cmd->add_option("--device", a->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  return [a]() { return run_edit(*a); };
}

}  // namespace graft::cli
