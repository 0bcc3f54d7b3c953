// The patch file format (docs/patch-format.md) without LibTorch: a reader that validates a whole
// file, and every entry's factors as Eigen matrices over the file's float32 bytes, with dW formed in
// float64. Patch::load (edits/patch.h) parses here, then wraps the factors as at::Tensors; the fuzz
// build (scripts/fuzz.sh) links it alone.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/io/safetensors.h"
#include "edits/patch_header.h"

namespace graft::edits {

using FloatMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using DoubleMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using FactorMap = Eigen::Map<const FloatMatrix>;

// One body tensor: row-major float32, in the file's mapping (or in a copy when the file places it at
// an address a float cannot be read from).
struct Factor {
  const float* data = nullptr;
  int64_t rows = 0, cols = 0;
  FactorMap matrix() const { return FactorMap(data, rows, cols); }
  size_t nbytes() const { return static_cast<size_t>(rows * cols) * sizeof(float); }
};

// One entry of a patch file: its header fields and its body tensors.
struct PatchFileEntry : PatchEntryHeader {
  Factor left, right;  // low rank: [out, r], [in, r]
  Factor dense;        // dense: [out, in]

  // dW in the logical [out, in] orientation, float64 (exact at rank 1: a product of two float32
  // values is a float64; at rank r > 1 the sums round, in Eigen's order).
  DoubleMatrix logical_delta() const;
  // dW laid out as the checkpoint stores the tensor ([in, out] for InOut), float64.
  DoubleMatrix stored_delta() const;
};

// A patch file read and validated: structure, format name and version, every field, the base
// fingerprints (lower-case hex SHA-256), entry shapes, ranks and layouts, body tensors (present, F32,
// the shapes the header implies, none unused, none shared), one entry per tensor, the body checksum,
// finite values. Anything wrong: FormatError "<path>: not a valid graft patch: <problem>".
// Move-only: the factors point into the file it holds.
class PatchFile {
 public:
  static PatchFile open(const std::string& path);    // plus InputError for a file it cannot open
  static PatchFile parse(io::SafetensorsFile file);  // a file already opened (the fuzz target's)
  PatchFile(PatchFile&&) = default;
  PatchFile& operator=(PatchFile&&) = default;
  PatchFile(const PatchFile&) = delete;
  PatchFile& operator=(const PatchFile&) = delete;

  const std::string& path() const { return file_.path(); }
  const std::vector<PatchFileEntry>& entries() const { return entries_; }
  const BaseFingerprint& base() const { return base_; }
  const PatchProvenance& provenance() const { return provenance_; }
  const std::string& created() const { return created_; }
  const std::string& graft_version() const { return graft_version_; }
  const std::string& checksum() const { return checksum_; }  // body_sha256, checked against the body

 private:
  explicit PatchFile(io::SafetensorsFile file) : file_(std::move(file)) {}
  io::SafetensorsFile file_;                // keeps the mapping the factors point into
  std::vector<std::vector<float>> copies_;  // misaligned body tensors, copied
  std::vector<PatchFileEntry> entries_;
  BaseFingerprint base_;
  PatchProvenance provenance_;
  std::string created_, graft_version_, checksum_;
};

}  // namespace graft::edits
