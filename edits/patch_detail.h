// Internals shared by edits/patch.cpp (the file format, in-memory application) and
// edits/patch_directory.cpp (patched model directories). Not part of the public API.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "core/io/safetensors.h"
#include "edits/patch.h"

namespace graft::edits::detail {

// SHA-256 of a tensor's bytes as they are in the FILE behind its view (read with pread, not through
// the mapping): the mapping is copy-on-write and may hold weights patched in memory, the file never
// does. FormatError when the file changed size since it was mapped.
std::string stored_tensor_sha256(const io::TensorView& view);

// "1f3a9c0d (rome, path/to/file.safetensors)": how messages name a patch.
std::string describe(const Patch& patch);

// The record of a directory graft patched (graft_patches.json), parsed and checked against the
// directory: the base copies hash to the base fingerprints, the touched tensors still hold the bytes
// graft wrote, every recorded patch file loads and has the recorded checksum.
struct Record {
  BaseFingerprint base;                        // fingerprints of every tensor a recorded patch touched
  std::map<std::string, std::string> written;  // tensor -> SHA-256 of the bytes graft wrote
  std::vector<Patch> applied;                  // oldest first, loaded from the directory's copies
  std::map<std::string, std::string> sources;  // checksum -> file name the patch was applied from
  std::string base_copy_path;                  // the safetensors file with the base bytes
};
std::optional<Record> read_record(const std::string& model_dir, const io::Checkpoint& checkpoint);

// The base model's fingerprint of `tensor`: the record's when the directory is a patched one that
// touched it, else the hash of the bytes the checkpoint holds.
std::string base_sha256(const io::Checkpoint& checkpoint, const Record* record, const std::string& tensor);

// Why `patch` does not belong to the model described by `arch` + `checkpoint` (+ record), or "".
std::string mismatch(const arch::Architecture& arch, const io::Checkpoint& checkpoint, const Record* record,
                     const Patch& patch);

}  // namespace graft::edits::detail
