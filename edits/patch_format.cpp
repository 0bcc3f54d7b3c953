// Reading a patch file without LibTorch (docs/patch-format.md): every check Patch::load makes, in the
// order it makes them, so that the first problem found is the one reported.
#include "edits/patch_format.h"

#include <cstring>
#include <set>

#include "core/error.h"
#include "core/io/detail.h"
#include "edits/weight_layout.h"

namespace graft::edits {
namespace {

using Json = nlohmann::json;
using detail::JsonFields;
using io::detail::shape_string;

UpdateKind parse_kind(const JsonFields& r, const std::string& s, const std::string& where) {
  if (s == "low_rank") return UpdateKind::LowRank;
  if (s == "dense") return UpdateKind::Dense;
  r.fail(where + ".kind " + io::detail::quoted(s) + " is not low_rank or dense");
}

arch::WeightLayout parse_layout(const JsonFields& r, const std::string& s, const std::string& where) {
  if (s == "out_in") return arch::WeightLayout::OutIn;
  if (s == "in_out") return arch::WeightLayout::InOut;
  r.fail(where + ".layout " + io::detail::quoted(s) + " is not out_in or in_out");
}

// The JSON document under kPatchMetadataKey, checked to be this format and version.
Json read_header(const JsonFields& r, const io::SafetensorsFile& file) {
  const auto meta = file.metadata().find(kPatchMetadataKey);
  if (meta == file.metadata().end())
    r.fail("no " + io::detail::quoted(kPatchMetadataKey) + " entry in the safetensors __metadata__");
  Json header;
  try {
    header = Json::parse(meta->second);
  } catch (const Json::exception& e) {
    r.fail("the header is not valid JSON: " + io::detail::printable(e.what()));
  }
  if (!header.is_object()) r.fail("the header is not a JSON object");
  const std::string format = r.string(header, "format", "header");
  if (format != kPatchFormatName)
    r.fail("format is " + io::detail::quoted(format) + ", expected " + io::detail::quoted(kPatchFormatName));
  const int64_t version = r.integer(header, "format_version", "header");
  if (version != kPatchFormatVersion)
    r.fail("format version " + std::to_string(version) + " (this graft reads version " +
           std::to_string(kPatchFormatVersion) +
           (version > kPatchFormatVersion ? "; the patch is from a newer graft)" : ")"));
  return header;
}

// One body tensor, checked against the shape the header implies. A float can be read in place
// unless the file puts it at an unaligned address (a valid safetensors file may): then it is copied.
Factor read_factor(const JsonFields& r, const io::SafetensorsFile& file, const std::string& name,
                   const std::vector<int64_t>& shape, std::vector<std::vector<float>>& copies) {
  if (!file.contains(name)) r.fail("the body has no tensor " + io::detail::quoted(name));
  const io::TensorView& view = file.get(name);
  if (view.dtype != io::DType::F32)
    r.fail("body tensor " + io::detail::quoted(name) + " is " + io::dtype_name(view.dtype) + ", expected F32");
  if (view.shape != shape)
    r.fail("body tensor " + io::detail::quoted(name) + " has shape " + shape_string(view.shape) +
           ", the header implies " + shape_string(shape));
  if (reinterpret_cast<uintptr_t>(view.data) % alignof(float) == 0)
    return {reinterpret_cast<const float*>(view.data), shape[0], shape[1]};
  copies.emplace_back(view.nbytes / sizeof(float));
  std::memcpy(copies.back().data(), view.data, view.nbytes);
  return {copies.back().data(), shape[0], shape[1]};
}

PatchFileEntry read_entry(const JsonFields& r, const io::SafetensorsFile& file, const Json& j, size_t index,
                          std::vector<std::vector<float>>& copies) {
  const std::string where = "entries[" + std::to_string(index) + "]";
  PatchFileEntry e;
  e.tensor = r.string(j, "tensor", where);
  e.layer = static_cast<int>(r.integer(j, "layer", where));
  e.kind = parse_kind(r, r.string(j, "kind", where), where);
  e.shape = r.shape(j, "shape", where);
  e.layout = parse_layout(r, r.string(j, "layout", where), where);
  if (e.shape.size() != 2 || e.shape[0] < 1 || e.shape[1] < 1) r.fail(where + ".shape must be [out, in]");
  if (e.layer < 0) r.fail(where + ".layer must be >= 0");
  const std::vector<std::string> names = body_tensor_names(e);
  if (e.kind == UpdateKind::LowRank) {
    e.rank = r.integer(j, "rank", where);
    if (e.rank < 1) r.fail(where + ".rank must be >= 1");
    e.left = read_factor(r, file, names[0], {e.shape[0], e.rank}, copies);
    e.right = read_factor(r, file, names[1], {e.shape[1], e.rank}, copies);
  } else {
    e.dense = read_factor(r, file, names[0], e.shape, copies);
  }
  return e;
}

// The entries, each with a fingerprint of its tensor in the stored shape, one per tensor, and every
// body tensor and fingerprint used by one.
std::vector<PatchFileEntry> read_entries(const JsonFields& r, const io::SafetensorsFile& file, const Json& header,
                                         const BaseFingerprint& base, std::vector<std::vector<float>>& copies) {
  const Json& entries = r.field(header, "entries", Json::value_t::array, "header");
  if (entries.empty()) r.fail("no entries");
  std::vector<PatchFileEntry> out;
  std::set<std::string> body_names;
  for (size_t i = 0; i < entries.size(); ++i) {
    PatchFileEntry e = read_entry(r, file, entries[i], i, copies);
    const auto fingerprint = base.tensors.find(e.tensor);
    if (fingerprint == base.tensors.end())
      r.fail("base.tensors has no fingerprint for " + io::detail::quoted(e.tensor));
    if (fingerprint->second.shape != stored_shape(e.shape, e.layout))
      r.fail("entry " + io::detail::quoted(e.tensor) + ": shape " + shape_string(e.shape) + " with layout " +
             weight_layout_name(e.layout) + " disagrees with the base shape " +
             shape_string(fingerprint->second.shape));
    for (const auto& name : body_tensor_names(e))
      if (!body_names.insert(name).second) r.fail("tensor " + io::detail::quoted(e.tensor) + " has two entries");
    out.push_back(std::move(e));
  }
  if (body_names.size() != file.tensors().size()) r.fail("the body holds tensors no entry uses");
  if (base.tensors.size() != out.size()) r.fail("base.tensors lists tensors no entry touches");
  return out;
}

// The body checksum, checked against the header's; then finite values (a NaN in a file whose
// checksum matches was written that way, not corrupted).
std::string check_body(const JsonFields& r, const Json& header, const std::vector<PatchFileEntry>& entries) {
  const std::string stored = r.string(header, "body_sha256", "header");
  std::vector<std::pair<const void*, size_t>> bytes;
  for (const auto& e : entries)
    for (const auto& [name, factor] : body_parts(e)) bytes.emplace_back(factor->data, factor->nbytes());
  const std::string actual = body_sha256(bytes);
  if (actual != stored)
    r.fail("body checksum mismatch (header says " + stored + ", body hashes to " + actual + "): the file is corrupt");
  for (const auto& e : entries)
    for (const auto& [name, factor] : body_parts(e))
      if (!factor->matrix().allFinite()) r.fail("body tensor " + io::detail::quoted(name) + " holds NaN or Inf");
  return actual;
}

}  // namespace

DoubleMatrix PatchFileEntry::logical_delta() const {
  if (kind == UpdateKind::Dense) return dense.matrix().cast<double>();
  return left.matrix().cast<double>() * right.matrix().cast<double>().transpose();
}

DoubleMatrix PatchFileEntry::stored_delta() const {
  DoubleMatrix d = logical_delta();
  if (stored_transposed(layout)) d.transposeInPlace();
  return d;
}

PatchFile PatchFile::open(const std::string& path) { return parse(io::SafetensorsFile::open(path)); }

PatchFile PatchFile::parse(io::SafetensorsFile file) {
  PatchFile patch(std::move(file));
  const JsonFields r(patch.path() + ": not a valid graft patch: ");
  const Json header = read_header(r, patch.file_);
  patch.graft_version_ = r.string(header, "graft_version", "header");
  patch.created_ = r.string(header, "created", "header");
  patch.provenance_.method = r.string(header, "method", "header");
  patch.provenance_.hyperparameters = header.value("hyperparameters", Json::object());
  patch.provenance_.requests = header.value("requests", Json::array());
  patch.provenance_.notes = header.value("notes", Json());
  patch.base_ = detail::read_base_fingerprint(r, r.field(header, "base", Json::value_t::object, "header"));
  patch.entries_ = read_entries(r, patch.file_, header, patch.base_, patch.copies_);
  patch.checksum_ = check_body(r, header, patch.entries_);
  return patch;
}

}  // namespace graft::edits
