// The patch header's names, checksum rule and JSON, and the checked JSON access (patch_header.h).
#include "edits/patch_header.h"

#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/sha256.h"

namespace graft::edits {

using Json = nlohmann::json;

const char* update_kind_name(UpdateKind kind) { return kind == UpdateKind::LowRank ? "low_rank" : "dense"; }
const char* weight_layout_name(arch::WeightLayout l) { return l == arch::WeightLayout::InOut ? "in_out" : "out_in"; }

std::vector<std::string> body_tensor_names(const PatchEntryHeader& entry) {
  if (entry.kind == UpdateKind::LowRank) return {entry.tensor + ".left", entry.tensor + ".right"};
  return {entry.tensor + ".delta"};
}

std::string body_sha256(const std::vector<std::pair<const void*, size_t>>& tensors) {
  io::Sha256 sha;
  for (const auto& [data, size] : tensors) sha.update(data, size);
  return io::Sha256::hex(sha.finish());
}

Json entry_json(const PatchEntryHeader& e) {
  Json j = {{"tensor", e.tensor},
            {"layer", e.layer},
            {"kind", update_kind_name(e.kind)},
            {"shape", e.shape},
            {"layout", weight_layout_name(e.layout)}};
  if (e.kind == UpdateKind::LowRank) j["rank"] = e.rank;
  return j;
}

Json base_json(const BaseFingerprint& base) {
  Json tensors = Json::object();
  for (const auto& [name, t] : base.tensors)
    tensors[name] = {{"sha256", t.sha256}, {"dtype", t.dtype}, {"shape", t.shape}};
  return {{"model_type", base.model_type}, {"family", base.family}, {"tensors", tensors}};
}

namespace detail {

void JsonFields::fail(const std::string& problem) const { throw FormatError(context_ + problem); }

const JsonFields::Json& JsonFields::field(const Json& object, const std::string& key, Json::value_t type,
                                          const std::string& where) const {
  if (!object.is_object()) fail(where + " must be an object");
  auto it = object.find(key);
  if (it == object.end()) fail(where + " has no field " + io::detail::quoted(key));
  const bool ok = it->type() == type ||
                  (type == Json::value_t::number_integer && it->type() == Json::value_t::number_unsigned);
  if (!ok) fail(where + "." + key + " has the wrong type (" + it->type_name() + ")");
  return *it;
}

std::string JsonFields::string(const Json& o, const std::string& key, const std::string& where) const {
  return field(o, key, Json::value_t::string, where).get<std::string>();
}

int64_t JsonFields::integer(const Json& o, const std::string& key, const std::string& where) const {
  return field(o, key, Json::value_t::number_integer, where).get<int64_t>();
}

std::vector<int64_t> JsonFields::shape(const Json& o, const std::string& key, const std::string& where) const {
  const Json& s = field(o, key, Json::value_t::array, where);
  std::vector<int64_t> dims;
  for (const auto& d : s) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) fail(where + "." + key + " must list non-negative integers");
    dims.push_back(d.get<int64_t>());
  }
  return dims;
}

BaseFingerprint read_base_fingerprint(const JsonFields& r, const Json& b) {
  BaseFingerprint base;
  base.model_type = r.string(b, "model_type", "base");
  base.family = r.string(b, "family", "base");
  for (const auto& [name, t] : r.field(b, "tensors", Json::value_t::object, "base").items()) {
    const std::string where = "base.tensors[" + io::detail::quoted(name) + "]";
    BaseTensor bt{r.string(t, "sha256", where), r.string(t, "dtype", where), r.shape(t, "shape", where)};
    if (bt.sha256.size() != 64 || bt.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
      r.fail(where + ".sha256 is not a lower-case hex SHA-256");
    base.tensors.emplace(name, std::move(bt));
  }
  return base;
}

}  // namespace detail
}  // namespace graft::edits
