// graft hooks MODEL_DIR: the hook point names this model offers.
#include <cstdio>

#include "arch/arch.h"
#include "bindings/cli/commands.h"
#include "core/hooks.h"

namespace graft::cli {

Runner add_hooks_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("hooks", "List the hook point names a model offers");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("MODEL_DIR", *dir, "Model directory")->required();
  return [dir]() {
    const auto a = arch::Architecture::from_model_dir(*dir);
    for (const auto& name : hook_names(*a)) std::printf("%s\n", name.c_str());
    return 0;
  };
}

}  // namespace graft::cli
