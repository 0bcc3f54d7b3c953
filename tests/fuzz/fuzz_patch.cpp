// libFuzzer target for the patch reader (edits/patch_format.h) on whole patch files: any bytes must
// either give a PatchFile that keeps the promises checked below, or end in a graft::Error. Anything
// else (a crash, a sanitizer report, another exception escaping, a broken promise: a trap) is a bug.
//
// The input is copied into a buffer of exactly its size, so ASan flags a read even one byte past it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "edits/patch_format.h"
#include "edits/weight_layout.h"

namespace {

using namespace graft::edits;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// A factor of the promised shape, readable as floats in place, every value finite (reading them all
// lets ASan check each access).
void check_factor(const Factor& f, int64_t rows, int64_t cols) {
  require(f.data != nullptr && f.rows == rows && f.cols == cols);
  require(reinterpret_cast<uintptr_t>(f.data) % alignof(float) == 0);
  require(f.matrix().allFinite());
}

// dW from finite float32 factors is finite in float64, and stored_delta is logical_delta in the
// stored layout. Only for small entries: the fuzzer's time is better spent on the parser.
void check_delta(const PatchFileEntry& e) {
  if (e.shape[0] * e.shape[1] > (int64_t{1} << 16)) return;
  const DoubleMatrix logical = e.logical_delta(), stored = e.stored_delta();
  require(logical.rows() == e.shape[0] && logical.cols() == e.shape[1] && logical.allFinite());
  const std::vector<int64_t> shape = stored_shape(e.shape, e.layout);
  require(stored.rows() == shape[0] && stored.cols() == shape[1]);
  require(stored_transposed(e.layout) ? stored == logical.transpose() : stored == logical);
}

void check_entry(const PatchFileEntry& e, const BaseFingerprint& base) {
  require(e.shape.size() == 2 && e.shape[0] >= 1 && e.shape[1] >= 1 && e.layer >= 0);
  const auto fingerprint = base.tensors.find(e.tensor);
  require(fingerprint != base.tensors.end() && fingerprint->second.shape == stored_shape(e.shape, e.layout));
  require(fingerprint->second.sha256.size() == 64);
  if (e.kind == UpdateKind::LowRank) {
    require(e.rank >= 1);
    check_factor(e.left, e.shape[0], e.rank);
    check_factor(e.right, e.shape[1], e.rank);
  } else {
    check_factor(e.dense, e.shape[0], e.shape[1]);
  }
  check_delta(e);
  (void)entry_json(e).dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    const PatchFile patch = PatchFile::parse(
        graft::io::SafetensorsFile::parse(graft::io::MappedFile::from_bytes(std::move(bytes), "fuzz")));
    require(!patch.entries().empty() && patch.base().tensors.size() == patch.entries().size());
    require(patch.checksum().size() == 64);
    for (const auto& e : patch.entries()) check_entry(e, patch.base());
    (void)base_json(patch.base()).dump();
  } catch (const graft::Error&) {
    // Rejected input: the expected outcome for most of what the fuzzer produces.
  }
  return 0;
}
