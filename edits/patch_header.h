// The patch header's types (docs/patch-format.md), its JSON, and the checked JSON access the readers
// share: what edits/patch.h (torch) and edits/patch_format.h (the torch-free reader) both need,
// without LibTorch or Eigen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "arch/arch.h"

namespace graft::edits {

constexpr const char* kPatchFormatName = "graft.patch";
constexpr int kPatchFormatVersion = 1;
// The safetensors `__metadata__` key that holds the JSON header.
constexpr const char* kPatchMetadataKey = "graft.patch";

struct PatchProvenance {
  std::string method;  // "rome", "memit", ...
  nlohmann::json hyperparameters = nlohmann::json::object();
  nlohmann::json requests = nlohmann::json::array();
  nlohmann::json notes = nullptr;
};

enum class UpdateKind { LowRank, Dense };
const char* update_kind_name(UpdateKind kind);         // "low_rank" / "dense"
const char* weight_layout_name(arch::WeightLayout l);  // "out_in" / "in_out"

// What the base checkpoint stores for one touched tensor.
struct BaseTensor {
  std::string sha256;          // of the tensor's bytes exactly as stored (its dtype, its layout)
  std::string dtype;           // safetensors dtype string: "BF16", "F32", ...
  std::vector<int64_t> shape;  // as stored (GPT-2 Conv1D: [in, out])
};

// The model a patch was made for.
struct BaseFingerprint {
  std::string model_type;  // config.json model_type
  std::string family;      // arch::family_name
  std::map<std::string, BaseTensor> tensors;
};

// What the header says of one entry; the body tensors are held by PatchEntry (at::Tensor, patch.h)
// or PatchFileEntry (Eigen, patch_format.h).
struct PatchEntryHeader {
  std::string tensor;
  int layer = -1;
  UpdateKind kind = UpdateKind::LowRank;
  std::vector<int64_t> shape;                             // logical [out, in]
  arch::WeightLayout layout = arch::WeightLayout::OutIn;  // how the base checkpoint stores it
  int64_t rank = 0;  // r of a low-rank entry; 0 for a dense one (the header has no rank)
};

// The entry's body tensor names in checksum order: <tensor>.left, <tensor>.right, or <tensor>.delta.
std::vector<std::string> body_tensor_names(const PatchEntryHeader& entry);
// The entry's body tensors with their names, in checksum order, for either kind of entry (PatchEntry
// holds at::Tensors, PatchFileEntry Eigen-readable Factors; both name them left, right, dense).
template <typename Entry>
auto body_parts(const Entry& entry) {
  using Part = std::pair<std::string, const decltype(entry.left)*>;
  const std::vector<std::string> names = body_tensor_names(entry);
  if (entry.kind == UpdateKind::LowRank) return std::vector<Part>{{names[0], &entry.left}, {names[1], &entry.right}};
  return std::vector<Part>{{names[0], &entry.dense}};
}
// SHA-256 (hex) of the body: every body tensor's bytes, (data, size) in checksum order.
std::string body_sha256(const std::vector<std::pair<const void*, size_t>>& tensors);

// The header's JSON for one entry and for the base fingerprint, as Patch::save writes them.
nlohmann::json entry_json(const PatchEntryHeader& entry);
nlohmann::json base_json(const BaseFingerprint& base);

namespace detail {

// Typed access to a JSON document: a missing field or one of the wrong type is a FormatError
// "<context><where> has no field ..." naming the field. The record of a patched directory
// (patch_directory.cpp) reads its base fingerprint through here too.
class JsonFields {
 public:
  using Json = nlohmann::json;
  explicit JsonFields(std::string context) : context_(std::move(context)) {}
  [[noreturn]] void fail(const std::string& problem) const;
  const Json& field(const Json& object, const std::string& key, Json::value_t type, const std::string& where) const;
  std::string string(const Json& o, const std::string& key, const std::string& where) const;
  int64_t integer(const Json& o, const std::string& key, const std::string& where) const;
  std::vector<int64_t> shape(const Json& o, const std::string& key, const std::string& where) const;

 private:
  std::string context_;
};

// The "base" object of a patch header or a directory record (`base_json`'s inverse), every
// fingerprint checked to be a lower-case hex SHA-256.
BaseFingerprint read_base_fingerprint(const JsonFields& r, const nlohmann::json& base);

}  // namespace detail
}  // namespace graft::edits
