// Patch files: the weight updates an editor (ROME, MEMIT) makes to MLP down projections, shipped as
// a versioned, checksummed safetensors file that names the exact base model it belongs to.
//
// The format is documented in docs/patch-format.md. In short: body tensors `<tensor>.left` and
// `<tensor>.right` (low rank, dW = left @ right^T) or `<tensor>.delta` (dense), float32, always in
// the logical nn.Linear orientation [out, in]; one JSON header in the safetensors `__metadata__`
// under the key "graft.patch" with the entries, the base model's fingerprint (SHA-256 of the stored
// bytes of every tensor the patch touches), provenance and a SHA-256 of the body.
//
// The header's types are in edits/patch_header.h, the torch-free reader in edits/patch_format.h;
// weights change in memory through edits/weight_update.h.
//
// Three ways to use a patch:
//   * in memory on a loaded Model: PatchStack (exact revert: it keeps the original bytes);
//   * on disk: apply_patches_to_directory / revert_patch_in_directory write a new model directory
//     and record what they did in `graft_patches.json` (see docs/patch-format.md, "Patched model
//     directories"), so a patched model still belongs to its base and reverts to it bit for bit;
//   * verify_patch_in_directory: does a patch belong to a model, and is it applied?
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "edits/patch_header.h"

namespace graft {
class Model;
}

namespace graft::edits {

// The record a patched model directory carries (next to config.json).
constexpr const char* kPatchRecordFile = "graft_patches.json";

// One tensor's change, in the logical [out, in] orientation of nn.Linear.
struct TensorUpdate {
  std::string tensor;  // HF tensor name (e.g. model.layers.5.mlp.down_proj.weight), from arch/
  int layer = -1;
  at::Tensor left, right;  // low rank: dW[out,in] = left[out,r] @ right[in,r]^T (ROME r=1: left=v, right=u)
  at::Tensor dense;        // or a dense dW[out,in]; exactly one form is set
};

// One entry of a loaded or created patch (the header's fields: edits/patch_header.h). Tensors are
// float32, contiguous, on the CPU.
struct PatchEntry : PatchEntryHeader {
  at::Tensor left, right;  // low rank
  at::Tensor dense;        // dense

  // dW in the logical [out, in] orientation, float64 (exact for a float32 body: every product of
  // two float32 values is a float64, and the sums of rank 1 are exact too).
  at::Tensor logical_delta() const;
  // dW laid out as the checkpoint stores the tensor ([in, out] for InOut), float64.
  at::Tensor stored_delta() const;
};

class Patch {
 public:
  // Checks every update against the model (the tensor is layer `layer`'s MLP down projection,
  // left [hidden, r] / right [width, r] or dense [hidden, width] with width =
  // intermediate_size_for_layer(layer), finite values, one update per tensor) and fingerprints
  // every touched tensor from the base model's ORIGINAL checkpoint bytes (read from the files, so
  // in-place edits of the loaded weights do not change the fingerprint; a model directory that
  // graft has patched is fingerprinted as its base, from its record). Throws InputError.
  static Patch create(const Model& base, std::vector<TensorUpdate> updates, PatchProvenance provenance);

  // Writes the file atomically (temporary name in the same directory, fsync, rename).
  void save(const std::string& path) const;
  // Validates everything (structure, format name and version, every field, shapes, the body
  // checksum, finite values); FormatError naming the file and the problem.
  static Patch load(const std::string& path);

  const std::vector<PatchEntry>& entries() const { return entries_; }
  const BaseFingerprint& base() const { return base_; }
  const PatchProvenance& provenance() const { return provenance_; }
  const std::string& created() const { return created_; }  // ISO 8601 UTC
  const std::string& graft_version() const { return graft_version_; }
  // SHA-256 of the body (every body tensor's bytes, in entry order: left then right, or delta).
  // Identifies the patch: the record of a patched directory lists patches by it.
  const std::string& checksum() const { return checksum_; }
  const std::string& source() const { return source_; }  // the file it was loaded from, or ""
  // The header as stored in the file.
  nlohmann::json header() const;
  // Largest |dW| element over all entries (for reports).
  double max_abs_delta() const;

 private:
  Patch() = default;
  std::vector<PatchEntry> entries_;
  BaseFingerprint base_;
  PatchProvenance provenance_;
  std::string created_, graft_version_, checksum_, source_;
};

// Why `patch` cannot be applied to `model` (model_type / family / missing tensor / stored shape /
// fingerprint), or "" when it belongs. Fingerprints come from the files behind the model, so the
// answer does not depend on patches already applied in memory.
std::string patch_mismatch(const Model& model, const Patch& patch);

// Patches applied in memory to one loaded model, in order. apply() checks that the patch belongs to
// the model (else InputError, model unchanged) and keeps a copy of every touched tensor as it was,
// so revert() restores the original bytes bit for bit. The weights may be views of the mapped
// checkpoint: the mapping is copy-on-write, so in-place writes never reach the file.
// A model loaded from a directory graft patched on disk counts as its base (through the record), and
// the patches recorded there count as applied already. The stack must not outlive the model;
// destroying it leaves the weights as they are.
class PatchStack {
 public:
  explicit PatchStack(Model& model) : model_(model) {}
  PatchStack(const PatchStack&) = delete;
  PatchStack& operator=(const PatchStack&) = delete;

  void apply(const Patch& patch);
  // Reverts a patch that is applied. Any order works as long as no patch applied after it touches
  // one of its tensors (else InputError naming that patch: revert it first). Not applied: InputError.
  void revert(const Patch& patch);
  void revert_all();  // newest first
  bool is_applied(const Patch& patch) const;
  std::vector<std::string> applied_checksums() const;  // oldest first

 private:
  struct Applied {
    std::string checksum;
    std::map<std::string, at::Tensor> originals;  // tensor name -> copy of the weight before apply
  };
  Model& model_;
  std::vector<Applied> applied_;
};

// ----- Model directories on disk -----

struct DirectoryWriteOptions {
  bool overwrite = false;  // replace an existing output directory (never the input itself)
};

// Writes `out_dir`: `model_dir` with the patches added, in order. Every patch must belong to the
// model (fingerprints of the touched tensors; a directory graft already patched counts as its base,
// and the new patches are recorded after the old ones). W' = base + sum of every recorded dW,
// computed in float64 from the base bytes and cast once to the stored dtype, in the stored layout.
// Only the shards holding touched tensors are rewritten; other files are copied. The directory is
// built under a temporary name beside `out_dir`, fsynced, then renamed: on any error nothing is
// left behind and `model_dir` is never modified. Throws InputError.
void apply_patches_to_directory(const std::string& model_dir, const std::vector<Patch>& patches,
                                const std::string& out_dir, const DirectoryWriteOptions& options = {});

// Writes `out_dir`: `model_dir` without `patch`, which its record must list (else InputError).
// Tensors no remaining patch touches get their base bytes back exactly; when no patch remains the
// output is the base model again, without a record.
void revert_patch_in_directory(const std::string& model_dir, const Patch& patch, const std::string& out_dir,
                               const DirectoryWriteOptions& options = {});

struct VerifyReport {
  bool belongs = false;                        // the base fingerprint matches the model (or its recorded base)
  std::string mismatch;                        // why not, when !belongs
  bool recorded = false;                       // the directory's record lists the patch
  bool applied = false;                        // recorded, and the weights equal base + recorded dW within rounding
  double max_error = 0.0;                      // max |W - (base + recorded dW + this dW if not recorded)|
  double tolerance = 0.0;                      // the largest rounding error allowed for that element, at the max
  std::vector<std::string> applied_checksums;  // the record, oldest first
};
// Throws InputError for a directory it cannot read; a patch for another model is a report.
VerifyReport verify_patch_in_directory(const std::string& model_dir, const Patch& patch);

// The record of a patched directory as JSON (null when the directory has none), validated.
nlohmann::json read_patch_record(const std::string& model_dir);

}  // namespace graft::edits
