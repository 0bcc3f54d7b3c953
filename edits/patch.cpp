// The patch file format (docs/patch-format.md): building a patch from an editor's updates, writing
// it, reading it back (every check is edits/patch_format.cpp's), and applying it in memory with an
// exact revert.
#include "edits/patch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <ctime>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/sha256.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/patch_detail.h"
#include "edits/patch_format.h"
#include "edits/weight_update.h"

#ifndef GRAFT_VERSION
#define GRAFT_VERSION "unknown"
#endif

namespace graft::edits {
namespace {

using Json = nlohmann::json;
using io::detail::shape_string;

std::string now_iso8601_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::vector<int64_t> sizes_of(const at::Tensor& t) { return t.sizes().vec(); }

bool all_finite(const at::Tensor& t) { return t.numel() == 0 || at::isfinite(t).all().item<bool>(); }

std::string body_checksum(const std::vector<PatchEntry>& entries) {
  std::vector<std::pair<const void*, size_t>> bytes;
  for (const auto& entry : entries)
    for (const auto& [name, tensor] : body_parts(entry)) bytes.emplace_back(tensor->data_ptr(), tensor->nbytes());
  return body_sha256(bytes);
}

// A caller's tensor as a body tensor, owning its memory (a view of the caller's buffer would change
// under the patch).
at::Tensor to_body(const at::Tensor& t) { return patch_factor(t).clone(); }

// A factor read from a file as an owning tensor: the file may be replaced later.
at::Tensor to_body(const Factor& f) {
  return at::from_blob(const_cast<float*>(f.data), {f.rows, f.cols}, at::kFloat).clone();
}

// ----- create -----

[[noreturn]] void fail_update(const TensorUpdate& u, const std::string& problem) {
  throw InputError("patch update for tensor " + io::detail::quoted(u.tensor) + " (layer " + std::to_string(u.layer) +
                   "): " + problem);
}

PatchEntry entry_from_update(const Model& model, const TensorUpdate& u) {
  const auto& arch = model.arch();
  if (u.layer < 0 || u.layer >= arch.num_layers())
    fail_update(u, "layer out of range: the model has " + std::to_string(arch.num_layers()) + " layers");
  const arch::LinearNames& down = arch.mlp_down_projection(u.layer);
  if (u.tensor != down.weight)
    fail_update(u, "patches update MLP down projections only; layer " + std::to_string(u.layer) + "'s is " +
                       io::detail::quoted(down.weight));
  PatchEntry entry;
  entry.tensor = u.tensor;
  entry.layer = u.layer;
  entry.layout = down.layout;
  entry.shape = {arch.hidden_size(), arch.intermediate_size_for_layer(u.layer)};
  const int64_t out = entry.shape[0], in = entry.shape[1];
  const bool low_rank = u.left.defined() || u.right.defined();
  if (low_rank == u.dense.defined())
    fail_update(u, "set either left and right (low rank) or dense, not both or neither");
  if (low_rank) {
    if (!u.left.defined() || !u.right.defined()) fail_update(u, "a low-rank update needs both left and right");
    const auto left = sizes_of(u.left), right = sizes_of(u.right);
    if (left.size() != 2 || right.size() != 2 || left[1] != right[1] || left[1] < 1 || left[0] != out || right[0] != in)
      fail_update(u, "left " + shape_string(left) + " and right " + shape_string(right) +
                         " do not fit [out, in] = " + shape_string(entry.shape) + " (expected left [" +
                         std::to_string(out) + ", r], right [" + std::to_string(in) + ", r]; width of layer " +
                         std::to_string(u.layer) + " is " + std::to_string(in) + ")");
    entry.kind = UpdateKind::LowRank;
    entry.rank = left[1];
    entry.left = to_body(u.left);
    entry.right = to_body(u.right);
  } else {
    if (sizes_of(u.dense) != entry.shape)
      fail_update(u, "dense update has shape " + shape_string(sizes_of(u.dense)) +
                         ", expected [out, in] = " + shape_string(entry.shape) + " (width of layer " +
                         std::to_string(u.layer) + " is " + std::to_string(in) + ")");
    entry.kind = UpdateKind::Dense;
    entry.dense = to_body(u.dense);
  }
  for (const auto& [name, tensor] : body_parts(entry))
    if (!all_finite(*tensor)) fail_update(u, name + " holds NaN or Inf (after conversion to float32)");
  return entry;
}

}  // namespace

at::Tensor PatchEntry::logical_delta() const { return edits::logical_delta(left, right, dense); }

at::Tensor PatchEntry::stored_delta() const { return logical_to_stored(logical_delta(), layout).contiguous(); }

// ----- Patch -----

Patch Patch::create(const Model& base, std::vector<TensorUpdate> updates, PatchProvenance provenance) {
  if (updates.empty()) throw InputError("a patch needs at least one tensor update");
  if (provenance.method.empty()) throw InputError("a patch needs provenance.method (\"rome\", \"memit\", ...)");
  Patch patch;
  std::set<std::string> seen;
  for (const auto& u : updates) {
    if (!seen.insert(u.tensor).second)
      fail_update(u, "two updates for the same tensor; sum them into one before making the patch");
    patch.entries_.push_back(entry_from_update(base, u));
  }
  const auto& checkpoint = base.checkpoint();
  const auto record = detail::read_record(base.dir(), checkpoint);
  patch.base_.model_type = base.spec().model_type;
  patch.base_.family = arch::family_name(base.spec().family);
  for (const auto& e : patch.entries_) {
    const io::TensorView& view = checkpoint.get(e.tensor);
    const auto expected = stored_shape(e.shape, e.layout);
    if (view.shape != expected)
      throw InputError(view.file->path() + ": tensor " + io::detail::quoted(e.tensor) + " is stored as " +
                       shape_string(view.shape) + ", expected " + shape_string(expected) + " from config.json");
    patch.base_.tensors[e.tensor] = {detail::base_sha256(checkpoint, record ? &*record : nullptr, e.tensor),
                                     io::dtype_name(view.dtype), view.shape};
  }
  patch.provenance_ = std::move(provenance);
  patch.created_ = now_iso8601_utc();
  patch.graft_version_ = GRAFT_VERSION;
  patch.checksum_ = body_checksum(patch.entries_);
  return patch;
}

Json Patch::header() const {
  Json entries = Json::array();
  for (const auto& e : entries_) entries.push_back(entry_json(e));
  return {{"format", kPatchFormatName},
          {"format_version", kPatchFormatVersion},
          {"graft_version", graft_version_},
          {"created", created_},
          {"base", base_json(base_)},
          {"method", provenance_.method},
          {"hyperparameters", provenance_.hyperparameters},
          {"requests", provenance_.requests},
          {"notes", provenance_.notes},
          {"entries", entries},
          {"body_sha256", checksum_}};
}

void Patch::save(const std::string& path) const {
  std::vector<io::TensorToWrite> tensors;
  for (const auto& e : entries_)
    for (const auto& [name, t] : body_parts(e))
      tensors.push_back({name, io::DType::F32, sizes_of(*t), t->data_ptr(), t->nbytes()});
  io::write_safetensors(path, tensors, {{kPatchMetadataKey, header().dump()}});
}

Patch Patch::load(const std::string& path) {
  const PatchFile file = PatchFile::open(path);  // every check; FormatError naming the file
  Patch patch;
  patch.source_ = path;
  patch.graft_version_ = file.graft_version();
  patch.created_ = file.created();
  patch.provenance_ = file.provenance();
  patch.base_ = file.base();
  patch.checksum_ = file.checksum();
  for (const PatchFileEntry& e : file.entries()) {
    PatchEntry entry;
    static_cast<PatchEntryHeader&>(entry) = e;
    if (e.kind == UpdateKind::LowRank) {
      entry.left = to_body(e.left);
      entry.right = to_body(e.right);
    } else {
      entry.dense = to_body(e.dense);
    }
    patch.entries_.push_back(std::move(entry));
  }
  return patch;
}

double Patch::max_abs_delta() const {
  double most = 0.0;
  for (const auto& e : entries_) most = std::max(most, e.logical_delta().abs().max().item<double>());
  return most;
}

std::string patch_mismatch(const Model& model, const Patch& patch) {
  const auto record = detail::read_record(model.dir(), model.checkpoint());
  return detail::mismatch(model.arch(), model.checkpoint(), record ? &*record : nullptr, patch);
}

// ----- PatchStack -----

bool PatchStack::is_applied(const Patch& patch) const {
  for (const auto& a : applied_)
    if (a.checksum == patch.checksum()) return true;
  return false;
}

std::vector<std::string> PatchStack::applied_checksums() const {
  std::vector<std::string> out;
  for (const auto& a : applied_) out.push_back(a.checksum);
  return out;
}

void PatchStack::apply(const Patch& patch) {
  if (is_applied(patch)) throw InputError("patch " + detail::describe(patch) + " is already applied to this model");
  const auto on_disk = detail::read_record(model_.dir(), model_.checkpoint());
  if (on_disk)
    for (const auto& p : on_disk->applied)
      if (p.checksum() == patch.checksum())
        throw InputError("patch " + detail::describe(patch) + " is already applied: " + model_.dir() + "/" +
                         kPatchRecordFile + " records it");
  const std::string why = detail::mismatch(model_.arch(), model_.checkpoint(), on_disk ? &*on_disk : nullptr, patch);
  if (!why.empty())
    throw InputError("patch " + detail::describe(patch) + " does not belong to the model in " + model_.dir() + ": " +
                     why);
  // Every new value is computed before any weight changes, so a failure leaves the model as it was.
  Applied record{patch.checksum(), {}};
  std::vector<std::pair<at::Tensor*, at::Tensor>> writes;
  for (const auto& e : patch.entries()) {
    at::Tensor& weight = model_.weight(e.tensor);
    const auto expected = stored_shape(e.shape, e.layout);
    if (sizes_of(weight) != expected)
      throw InputError("patch " + detail::describe(patch) + ": weight " + io::detail::quoted(e.tensor) + " has shape " +
                       shape_string(sizes_of(weight)) + " in memory, expected " + shape_string(expected));
    writes.emplace_back(&weight, updated_weight(weight, e.logical_delta(), e.layout));
    record.originals.emplace(e.tensor, weight.clone());
  }
  for (auto& [weight, value] : writes) weight->copy_(value);
  applied_.push_back(std::move(record));
}

void PatchStack::revert(const Patch& patch) {
  size_t index = applied_.size();
  for (size_t i = 0; i < applied_.size(); ++i)
    if (applied_[i].checksum == patch.checksum()) index = i;
  if (index == applied_.size())
    throw InputError("patch " + detail::describe(patch) + " is not applied to this model; nothing to revert");
  // A later patch that changed the same tensor was added on top of this one's result: restoring
  // this one's originals would silently drop it too.
  for (size_t later = index + 1; later < applied_.size(); ++later)
    for (const auto& [name, original] : applied_[index].originals)
      if (applied_[later].originals.count(name))
        throw InputError("cannot revert patch " + detail::describe(patch) + " yet: patch " +
                         applied_[later].checksum.substr(0, 12) + ", applied after it, also changes " +
                         io::detail::quoted(name) + "; revert that one first");
  for (const auto& [name, original] : applied_[index].originals) model_.weight(name).copy_(original);
  applied_.erase(applied_.begin() + static_cast<std::ptrdiff_t>(index));
}

void PatchStack::revert_all() {
  while (!applied_.empty()) {
    for (const auto& [name, original] : applied_.back().originals) model_.weight(name).copy_(original);
    applied_.pop_back();
  }
}

// ----- detail shared with patch_directory.cpp -----

namespace detail {

std::string describe(const Patch& patch) {
  std::string text = patch.checksum().substr(0, 12) + " (" + patch.provenance().method;
  if (!patch.source().empty()) text += ", " + patch.source();
  return text + ")";
}

std::string stored_tensor_sha256(const io::TensorView& view) {
  const io::MappedFile& mapped = *view.file;
  const std::string& path = mapped.path();
  const auto offset = static_cast<off_t>(view.data - mapped.data());
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0)
    throw InputError(path + ": cannot open to fingerprint " + io::detail::quoted(view.name) + ": " +
                     io::detail::os_error(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != mapped.size()) {
    ::close(fd);
    throw FormatError(path + ": the file changed on disk since it was opened; reload the model");
  }
  io::Sha256 sha;
  std::vector<char> chunk(size_t{1} << 20);
  size_t done = 0;
  while (done < view.nbytes) {
    const size_t want = std::min(chunk.size(), view.nbytes - done);
    const ssize_t n = ::pread(fd, chunk.data(), want, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      throw InputError(path + ": cannot read tensor " + io::detail::quoted(view.name) + ": " +
                       io::detail::os_error(err));
    }
    sha.update(chunk.data(), static_cast<size_t>(n));
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return io::Sha256::hex(sha.finish());
}

std::string base_sha256(const io::Checkpoint& checkpoint, const Record* record, const std::string& tensor) {
  if (record) {
    const auto it = record->base.tensors.find(tensor);
    if (it != record->base.tensors.end()) return it->second.sha256;
  }
  return stored_tensor_sha256(checkpoint.get(tensor));
}

std::string mismatch(const arch::Architecture& arch, const io::Checkpoint& checkpoint, const Record* record,
                     const Patch& patch) {
  const auto& spec = arch.spec();
  const std::string family = arch::family_name(spec.family);
  if (patch.base().model_type != spec.model_type || patch.base().family != family)
    return "the patch is for a " + patch.base().model_type + " (" + patch.base().family + ") model, this is a " +
           spec.model_type + " (" + family + ") model";
  for (const auto& e : patch.entries()) {
    if (e.layer >= arch.num_layers())
      return "entry " + io::detail::quoted(e.tensor) + " is for layer " + std::to_string(e.layer) + ", the model has " +
             std::to_string(arch.num_layers());
    const arch::LinearNames& down = arch.mlp_down_projection(e.layer);
    if (down.weight != e.tensor)
      return "entry " + io::detail::quoted(e.tensor) + ": layer " + std::to_string(e.layer) +
             "'s down projection here is " + io::detail::quoted(down.weight);
    if (down.layout != e.layout)
      return "entry " + io::detail::quoted(e.tensor) + ": the patch says layout " + weight_layout_name(e.layout) +
             ", the model stores " + weight_layout_name(down.layout);
    const std::vector<int64_t> logical = {arch.hidden_size(), arch.intermediate_size_for_layer(e.layer)};
    if (e.shape != logical)
      return "entry " + io::detail::quoted(e.tensor) + " has shape " + shape_string(e.shape) + ", layer " +
             std::to_string(e.layer) + " of this model needs " + shape_string(logical);
    if (!checkpoint.contains(e.tensor)) return "the checkpoint has no tensor " + io::detail::quoted(e.tensor);
    const io::TensorView& view = checkpoint.get(e.tensor);
    if (view.shape != stored_shape(e.shape, e.layout))
      return "tensor " + io::detail::quoted(e.tensor) + " is stored as " + shape_string(view.shape) +
             ", the patch expects " + shape_string(stored_shape(e.shape, e.layout));
    const std::string expected = patch.base().tensors.at(e.tensor).sha256;
    const std::string actual = base_sha256(checkpoint, record, e.tensor);
    if (actual != expected)
      return "tensor " + io::detail::quoted(e.tensor) + " has fingerprint " + actual.substr(0, 16) +
             "..., the patch was made for " + expected.substr(0, 16) + "... (another model or another version of it)";
  }
  return "";
}

}  // namespace detail
}  // namespace graft::edits
