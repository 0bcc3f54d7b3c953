// The `graft` command-line program: each subcommand registers its options on a CLI11 app and
// returns the function that runs it. Subcommands stay thin: parse, call the library, print.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace graft::cli {

using Runner = std::function<int()>;

Runner add_info_command(CLI::App& app);
Runner add_hooks_command(CLI::App& app);
Runner add_run_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_patch_command(CLI::App& app);
Runner add_crown_scan_command(CLI::App& app);
Runner add_eval_command(CLI::App& app);
Runner add_stats_command(CLI::App& app);
Runner add_edit_command(CLI::App& app);

}  // namespace graft::cli
