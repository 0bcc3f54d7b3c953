// graft stats MODEL --corpus FILE --layers ... -o STATS: second moments of the MLP keys.
#include <chrono>
#include <cstdio>

#include "bindings/cli/commands.h"
#include "bindings/cli/editor_options.h"
#include "bindings/cli/progress.h"
#include "core/model.h"
#include "core/tensor.h"
#include "core/timing.h"
#include "edits/stats.h"

namespace graft::cli {

Runner add_stats_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("stats", "Collect second-moment statistics of the MLP keys over a corpus");
  struct Args {
    std::string dir, corpus, layers, output, device = "cpu";
    edits::StatsOptions options;  // the defaults the flags start from
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("MODEL_DIR", a->dir, "Model directory")->required();
  cmd->add_option("--corpus", a->corpus, "Text file, one text per line")->required();
  cmd->add_option("--layers", a->layers, "Layers, e.g. 0,1,2 or 0-2 (default: all)");
  cmd->add_option("-o,--output", a->output, "Statistics file to write (.safetensors)")->required();
  cmd->add_option("--max-tokens", a->options.max_tokens, "Stop after this many tokens")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--window", a->options.window, "Tokens per sequence")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--batch-size", a->options.batch_size, "Sequences per forward pass")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--device", a->device, "cpu, cuda, cuda:N or mps")->capture_default_str();
  return [a]() {
    LoadOptions load;
    load.device = a->device;
    const auto model = Model::load(a->dir, load);
    edits::StatsOptions options = a->options;
    options.layers = parse_layers(a->layers);
    Progress progress("statistics", 0, "tok");
    options.on_progress = [&](int64_t done, int64_t total) {
      progress.set_total(total);
      progress.update(done);
    };
    const auto started = std::chrono::steady_clock::now();
    const auto stats = edits::KeyStatistics::collect(*model, edits::KeyStatistics::read_corpus(a->corpus), options);
    progress.finish();
    stats.save(a->output);
    const double seconds = seconds_since(started);
    std::printf("wrote %s: %lld tokens, layers", a->output.c_str(), static_cast<long long>(stats.tokens()));
    for (int layer : stats.layers())
      std::printf(" %d (width %lld)", layer, static_cast<long long>(model->arch().intermediate_size_for_layer(layer)));
    std::printf(", %.1f s (%.0f tokens/s)\n", seconds, stats.tokens() / std::max(seconds, 1e-9));
    return 0;
  };
}

}  // namespace graft::cli
