// graft bench [--quick] [--json] [--models a,b] [--repeats N] [--peer]: random-weight models of real
// shapes (written to a temporary directory and loaded through the real loader), each measured in a
// child process of its own so that its peak resident memory is its own. See bench/RESULTS.md.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bench/bench.h"
#include "bindings/cli/commands.h"
#include "core/error.h"
#include "core/tensor.h"

namespace graft::cli {
namespace {
namespace fs = std::filesystem;

struct BenchArgs {
  bool quick = false, json = false, peer = false, profile = false;
  int repeats = 3, threads = 0;
  std::vector<std::string> models, sections;
  std::string facts_dir, write_models, json_out, device = "cpu";
  std::string child, child_dir, child_out;  // internal: one model in this process
};

std::string self_path() { return fs::read_symlink("/proc/self/exe").string(); }

// Runs argv, waits; the exit status (or 128 + signal).
int run_process(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run_bench(const BenchArgs& a) {
  parse_device(a.device);  // an unusable device is refused before any model is written
  bench::Options opt;
  opt.quick = a.quick;
  opt.repeats = a.repeats;
  opt.threads = a.threads;
  opt.sections = a.sections;
  opt.device = a.device;
  opt.profile = a.profile;
  opt.facts_dir = a.facts_dir.empty() ? bench::source_dir() + "/models/gemma4_facts" : a.facts_dir;
  auto log = [](const std::string& line) { std::fprintf(stderr, "bench: %s\n", line.c_str()); };

  if (!a.child.empty()) {  // one model, this process
    const nlohmann::json r = bench::measure_model(a.child, a.child_dir, opt, log);
    std::ofstream(a.child_out) << r.dump(1);
    return 0;
  }
  const std::vector<std::string> models = a.models.empty() ? bench::model_names() : a.models;
  if (!a.write_models.empty()) {  // for the peer script: the same random models, kept
    for (const auto& m : models)
      if (bench::bundled_model_dir(m, opt).empty()) bench::write_random_model(m, a.quick, a.write_models + "/" + m);
    return 0;
  }

  char tmpl[] = "/tmp/graft-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw InputError("bench: cannot create a temporary directory");
  const std::string tmp = tmpl;
  nlohmann::json results = nlohmann::json::array();
  for (const auto& m : models) {
    const bool bundled = !bench::bundled_model_dir(m, opt).empty();
    const std::string dir = bundled ? bench::bundled_model_dir(m, opt) : tmp + "/" + m;
    if (!bundled) {
      log(m + ": writing random weights to " + dir);
      bench::write_random_model(m, a.quick, dir);
    }
    const std::string out = tmp + "/" + m + ".json";
    std::vector<std::string> cmd = {self_path(),   "bench",
                                    "--child",     m,
                                    "--child-dir", dir,
                                    "--child-out", out,
                                    "--repeats",   std::to_string(a.repeats),
                                    "--threads",   std::to_string(a.threads),
                                    "--device",    a.device};
    if (a.quick) cmd.push_back("--quick");
    if (a.profile) cmd.push_back("--profile");
    for (const auto& s : a.sections) cmd.insert(cmd.end(), {"--sections", s});
    const int rc = run_process(cmd);
    if (!bundled) fs::remove_all(dir);
    if (rc != 0) {
      log(m + ": child exited with " + std::to_string(rc) + "; left out");
      continue;
    }
    std::ifstream in(out);
    results.push_back(nlohmann::json::parse(in));
  }
  fs::remove_all(tmp);

  const nlohmann::json all = {{"quick", a.quick}, {"repeats", a.repeats}, {"threads", a.threads}, {"results", results}};
  if (!a.json_out.empty()) std::ofstream(a.json_out) << all.dump(1) << "\n";
  if (a.json) std::printf("%s\n", all.dump(1).c_str());
  else std::printf("%s", bench::format_tables(results).c_str());

  if (a.peer) {
    std::vector<std::string> cmd = {"/usr/bin/env",
                                    "python3",
                                    bench::source_dir() + "/bench/peer_transformers.py",
                                    "--graft",
                                    self_path(),
                                    "--repeats",
                                    std::to_string(a.repeats),
                                    "--threads",
                                    std::to_string(a.threads)};
    if (a.quick) cmd.push_back("--quick");
    if (a.json) cmd.push_back("--json");
    cmd.insert(cmd.end(), {"--device", a.device});
    return run_process(cmd);
  }
  return 0;
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "benchmarks on random-weight models of real shapes (figures, not tests)");
  cmd->add_flag("--quick", args->quick, "fewer layers, no 8 x 512 prefill, shorter decode");
  cmd->add_flag("--json", args->json, "print JSON instead of tables");
  cmd->add_flag("--profile", args->profile,
                "editors: print each row's operators by self time (LibTorch's RecordFunction) and its matrix "
                "products' GFLOP and rate (counting them costs a little time)");
  cmd->add_flag("--peer", args->peer, "then run bench/peer_transformers.py (graft vs transformers)");
  cmd->add_option("--repeats", args->repeats, "timed runs per figure (median reported)")->check(CLI::Range(1, 100));
  cmd->add_option("--threads", args->threads, "intra-op threads (0: one per core)")->check(CLI::Range(0, 1024));
  cmd->add_option("--models", args->models,
                  "subset of: gemma4-e2b llama-1b gpt2-small gemma4-facts gpt2-facts llama-facts gemma4-e2b-editors")
      ->delimiter(',');
  cmd->add_option("--device", args->device, "cpu, cuda, cuda:N or mps: where the models and the reference figures run")
      ->capture_default_str();
  cmd->add_option(
         "--sections", args->sections,
         "measure only these (memory and the reference figures always): prefill decode statistics hooks editors")
      ->delimiter(',')
      ->check(CLI::IsMember(bench::section_names()));
  cmd->add_option("--json-out", args->json_out, "also write the JSON results to FILE");
  cmd->add_option("--facts", args->facts_dir, "the bundled facts model directory");
  cmd->add_option("--write-models", args->write_models, "only write the random models into DIR and exit");
  cmd->add_option("--child", args->child)->group("");
  cmd->add_option("--child-dir", args->child_dir)->group("");
  cmd->add_option("--child-out", args->child_out)->group("");
  return [args] { return run_bench(*args); };
}

}  // namespace graft::cli
