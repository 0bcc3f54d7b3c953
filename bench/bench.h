// Benchmarks: random-weight models of real shapes, measured against figures taken in the same
// process (a large float32 GEMM for arithmetic, a large copy for memory bandwidth) so that machine
// noise cancels. Prints figures; nothing here is a test.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace graft::bench {

struct Options {
  bool quick = false;     // fewer layers, no batch-8 x 512 prefill, shorter decode
  int repeats = 3;        // timed runs per figure (after one warm-up); the median is reported
  int threads = 0;        // intra-op threads (0: LibTorch's default, one per core)
  std::string facts_dir;  // the bundled facts model (ROME / MEMIT / KeyStatistics rows)
  // cpu, cuda, cuda:N or mps: where the model and the reference figures run. Every timed call ends
  // with a device synchronisation; memory peaks are then the device allocator's.
  std::string device = "cpu";
  // Which measurements to take (section_names()); empty: all. The reference figures and the memory
  // peaks are always taken. With a subset, a model can be measured at full depth in minutes.
  std::vector<std::string> sections;
  bool profile = false;  // editors: also each row's operators by self time (bench/op_profile.h)
  bool wants(const std::string& section) const;
};

// "prefill", "decode", "statistics", "hooks", "editors" (on models with a tokenizer: bench/editors.h).
std::vector<std::string> section_names();

// The source tree (for the Gemma 4 config, the facts model, the corpus and the peer script).
std::string source_dir();

// Names of the benchmark models: the random "gemma4-e2b", "llama-1b", "gpt2-small", the bundled
// "gemma4-facts", "gpt2-facts", "llama-facts", and "gemma4-e2b-editors" (the E2B shape at four
// layers with the facts tokenizer, for the editors' rows).
std::vector<std::string> model_names();
// A bundled model's directory; empty for the random ones.
std::string bundled_model_dir(const std::string& name, const Options& options);
// Writes config.json and a random model.safetensors for a named shape into `dir` (created).
// "gemma4-facts" is not written: it is the bundled model.
void write_random_model(const std::string& name, bool quick, const std::string& dir);

// Measures one model directory. Run it in a fresh process: the memory figures are that process's
// resident-set peaks. `log` gets one line per step (progress on stderr).
nlohmann::json measure_model(const std::string& name, const std::string& model_dir, const Options& options,
                             const std::function<void(const std::string&)>& log);

// Human-readable tables of a list of measure_model results.
std::string format_tables(const nlohmann::json& results);

}  // namespace graft::bench
