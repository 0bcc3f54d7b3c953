// graft: look inside transformer language models and edit what they know.
#include <cstdio>
#include <exception>
#include <map>

#include "bindings/cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"graft: look inside transformer language models and edit what they know"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("graft ") + GRAFT_VERSION);

  std::map<CLI::App*, graft::cli::Runner> runners;
  auto add = [&](graft::cli::Runner (*command)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    graft::cli::Runner run = command(app);
    runners[app.get_subcommands({}).at(before)] = std::move(run);
  };
  add(graft::cli::add_info_command);
  add(graft::cli::add_hooks_command);
  add(graft::cli::add_run_command);
  add(graft::cli::add_bench_command);
  add(graft::cli::add_patch_command);
  add(graft::cli::add_crown_scan_command);
  add(graft::cli::add_eval_command);
  add(graft::cli::add_stats_command);
  add(graft::cli::add_edit_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;  // every bad argument is exit code 2, whatever CLI11 would say
  }

  try {
    for (auto& [subcommand, run] : runners)
      if (subcommand->parsed()) return run();
  } catch (const graft::InputError& e) {
    std::fprintf(stderr, "graft: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "graft: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
