// graft patch show|apply|revert|verify: patch files (docs/patch-format.md) on the command line.
//   show PATCH [--json]                        the header, human-readable
//   apply MODEL_DIR PATCH [PATCH...] -o OUT    a new model directory with the patches added
//   revert MODEL_DIR PATCH -o OUT              a new model directory without the patch
//   verify MODEL_DIR PATCH [--json]            exit 0: the patch belongs and is applied; 1: not
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bindings/cli/commands.h"
#include "core/io/detail.h"
#include "edits/patch.h"

namespace graft::cli {
namespace {

using edits::Patch;

using io::detail::shape_string;

// A JSON value on one line, or "-" when empty, for the human-readable listing.
std::string compact(const nlohmann::json& value) {
  if (value.is_null() || (value.is_structured() && value.empty())) return "-";
  return value.is_string() ? value.get<std::string>() : value.dump();
}

void print_patch(const Patch& patch) {
  std::printf("patch        %s\n", patch.source().c_str());
  std::printf("format       %s version %d, written by graft %s, created %s\n", edits::kPatchFormatName,
              edits::kPatchFormatVersion, patch.graft_version().c_str(), patch.created().c_str());
  std::printf("checksum     sha256:%s (body, verified)\n", patch.checksum().c_str());
  std::printf("method       %s\n", patch.provenance().method.c_str());
  std::printf("base model   model_type %s, family %s\n", patch.base().model_type.c_str(), patch.base().family.c_str());
  std::printf("max |dW|     %.6g\n", patch.max_abs_delta());
  std::printf("\n%5s  %-8s %5s  %-14s %-7s  %s\n", "layer", "kind", "rank", "shape[out,in]", "layout", "tensor");
  for (const auto& e : patch.entries())
    std::printf("%5d  %-8s %5s  %-14s %-7s  %s\n", e.layer, edits::update_kind_name(e.kind),
                e.kind == edits::UpdateKind::LowRank ? std::to_string(e.rank).c_str() : "-",
                shape_string(e.shape).c_str(), edits::weight_layout_name(e.layout), e.tensor.c_str());
  std::printf("\nbase fingerprints (SHA-256 of the stored bytes)\n");
  for (const auto& [name, t] : patch.base().tensors)
    std::printf("  %s  %s %s  %s\n", t.sha256.c_str(), t.dtype.c_str(), shape_string(t.shape).c_str(), name.c_str());
  std::printf("\nhyperparameters  %s\n", compact(patch.provenance().hyperparameters).c_str());
  std::printf("requests         %s\n", compact(patch.provenance().requests).c_str());
  std::printf("notes            %s\n", compact(patch.provenance().notes).c_str());
}

std::vector<Patch> load_all(const std::vector<std::string>& paths) {
  std::vector<Patch> patches;
  for (const auto& path : paths) patches.push_back(Patch::load(path));
  return patches;
}

nlohmann::json verify_json(const edits::VerifyReport& r, const Patch& patch, const std::string& dir) {
  return {{"model", dir},
          {"patch", patch.source()},
          {"checksum", patch.checksum()},
          {"belongs", r.belongs},
          {"mismatch", r.mismatch},
          {"recorded", r.recorded},
          {"applied", r.applied},
          {"max_error", r.max_error},
          {"tolerance", r.tolerance},
          {"applied_patches", r.applied_checksums}};
}

void print_verify(const edits::VerifyReport& r, const Patch& patch, const std::string& dir) {
  std::printf("patch        %s (%s)\n", patch.source().c_str(), patch.checksum().substr(0, 12).c_str());
  std::printf("model        %s\n", dir.c_str());
  if (!r.belongs) {
    std::printf("belongs      no: %s\n", r.mismatch.c_str());
    return;
  }
  std::printf("belongs      yes (base fingerprints match)\n");
  std::printf("recorded     %s\n", r.recorded ? "yes (graft_patches.json lists it)" : "no");
  std::printf("max error    %.3g (rounding allows %.3g there) against base + recorded patches%s\n", r.max_error,
              r.tolerance, r.recorded ? "" : " + this one");
  std::printf("applied      %s\n", r.applied ? "yes" : "no");
}

}  // namespace

Runner add_patch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("patch", "Show, apply, revert and verify patch files (weight edits)");
  cmd->require_subcommand(1);

  struct Args {
    std::string model_dir, out_dir;
    std::vector<std::string> patches;
    bool json = false, force = false;
  };
  auto args = std::make_shared<Args>();

  auto* show = cmd->add_subcommand("show", "Print a patch file's header (checks the whole file)");
  show->add_option("PATCH", args->patches, "Patch file")->required()->expected(1);
  show->add_flag("--json", args->json, "Print the stored JSON header");

  auto* apply = cmd->add_subcommand("apply", "Write a new model directory with the patches added, in order");
  apply->add_option("MODEL_DIR", args->model_dir, "Model directory (a plain or a graft-patched one)")->required();
  apply->add_option("PATCH", args->patches, "Patch files")->required()->expected(1, -1);
  apply->add_option("-o,--output", args->out_dir, "New model directory (must not exist)")->required();
  apply->add_flag("--force", args->force, "Replace OUT if it exists");

  auto* revert = cmd->add_subcommand("revert", "Write a new model directory without a patch graft applied");
  revert->add_option("MODEL_DIR", args->model_dir, "Model directory patched by graft")->required();
  revert->add_option("PATCH", args->patches, "Patch file to take out")->required()->expected(1);
  revert->add_option("-o,--output", args->out_dir, "New model directory (must not exist)")->required();
  revert->add_flag("--force", args->force, "Replace OUT if it exists");

  auto* verify = cmd->add_subcommand("verify", "Does the patch belong to the model, and is it applied? (exit 0/1)");
  verify->add_option("MODEL_DIR", args->model_dir, "Model directory")->required();
  verify->add_option("PATCH", args->patches, "Patch file")->required()->expected(1);
  verify->add_flag("--json", args->json, "Print JSON");

  return [args, show, apply, revert, verify]() {
    const edits::DirectoryWriteOptions options{args->force};
    if (show->parsed()) {
      const Patch patch = Patch::load(args->patches.at(0));
      if (args->json) std::printf("%s\n", patch.header().dump(2).c_str());
      else print_patch(patch);
      return 0;
    }
    if (apply->parsed()) {
      const std::vector<Patch> patches = load_all(args->patches);
      edits::apply_patches_to_directory(args->model_dir, patches, args->out_dir, options);
      std::printf("wrote %s: %s with %zu patch(es) applied\n", args->out_dir.c_str(), args->model_dir.c_str(),
                  patches.size());
      return 0;
    }
    if (revert->parsed()) {
      const Patch patch = Patch::load(args->patches.at(0));
      edits::revert_patch_in_directory(args->model_dir, patch, args->out_dir, options);
      std::printf("wrote %s: %s without patch %s\n", args->out_dir.c_str(), args->model_dir.c_str(),
                  patch.checksum().substr(0, 12).c_str());
      return 0;
    }
    const Patch patch = Patch::load(args->patches.at(0));
    const edits::VerifyReport report = edits::verify_patch_in_directory(args->model_dir, patch);
    if (args->json) std::printf("%s\n", verify_json(report, patch, args->model_dir).dump(2).c_str());
    else print_verify(report, patch, args->model_dir);
    return report.belongs && report.applied ? 0 : 1;
  };
}

}  // namespace graft::cli
