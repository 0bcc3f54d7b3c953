// Patched model directories: writing base + patches as a new model directory, reverting, verifying,
// and the record (graft_patches.json + graft_patches/) that lets a patched directory remember its
// base. The record keeps the base bytes of every touched tensor and a copy of every applied patch,
// so the weights are always recomputed as base + sum(dW) from scratch: rounding never accumulates
// over apply/revert cycles, and reverting the last patch gives back the base bytes exactly.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "arch/arch.h"
#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/sha256.h"
#include "core/tensor.h"
#include "edits/patch.h"
#include "edits/patch_detail.h"

namespace graft::edits {
namespace fs = std::filesystem;
namespace {

using Json = nlohmann::json;

constexpr const char* kRecordFormatName = "graft.patched_model";
constexpr int kRecordFormatVersion = 1;
constexpr const char* kRecordDataDir = "graft_patches";  // base copy + patch copies
constexpr const char* kBaseCopyFile = "graft_patches/base.safetensors";

std::string patch_copy_file(const std::string& checksum) {
  return std::string(kRecordDataDir) + "/" + checksum + ".safetensors";
}

// ----- the record -----

[[noreturn]] void fail_record(const fs::path& path, const std::string& problem) {
  throw FormatError(path.string() + ": " + problem);
}

const Json& require(const fs::path& path, const Json& object, const std::string& key,
                    bool (Json::*is)() const noexcept) {
  if (!object.is_object() || !object.contains(key) || !(object.at(key).*is)())
    fail_record(path, "missing or malformed field " + io::detail::quoted(key));
  return object.at(key);
}

Json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return Json::parse(text.str());
  } catch (const Json::exception& e) {
    fail_record(path, "not valid JSON: " + io::detail::printable(e.what()));
  }
}

// ----- numbers -----

// How finely a stored floating dtype rounds: `relative` is the machine epsilon (round to nearest
// errs by at most half of it, relative), `absolute` the subnormal spacing (the error floor near zero).
struct Rounding {
  double relative, absolute;
};
Rounding rounding_of(io::DType dtype, const std::string& tensor) {
  switch (dtype) {
    case io::DType::F64: return {std::ldexp(1.0, -52), std::ldexp(1.0, -1074)};
    case io::DType::F32: return {std::ldexp(1.0, -23), std::ldexp(1.0, -149)};
    case io::DType::F16: return {std::ldexp(1.0, -10), std::ldexp(1.0, -24)};
    case io::DType::BF16: return {std::ldexp(1.0, -7), std::ldexp(1.0, -133)};
    case io::DType::F8_E4M3: return {std::ldexp(1.0, -3), std::ldexp(1.0, -9)};
    case io::DType::F8_E5M2: return {std::ldexp(1.0, -2), std::ldexp(1.0, -16)};
    default:
      throw InputError("tensor " + io::detail::quoted(tensor) + " is stored as " + io::dtype_name(dtype) +
                       ", not a floating type: it cannot be patched");
  }
}

// base + the dW of every patch in `patches` that touches `tensor`, in float64, stored layout.
at::Tensor patched_value(const at::Tensor& base, const std::vector<const Patch*>& patches, const std::string& tensor) {
  at::Tensor sum = base.to(at::kDouble);
  for (const Patch* p : patches)
    for (const auto& e : p->entries())
      if (e.tensor == tensor) sum = sum + e.stored_delta();
  return sum;
}

// ----- the directory being written -----

// A directory under a temporary name beside its destination, removed unless committed.
class StagingDirectory {
 public:
  StagingDirectory(const fs::path& destination, bool overwrite) : destination_(destination), overwrite_(overwrite) {
    const fs::path parent = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    const std::string stem = "." + destination.filename().string() + ".graft-";
    path_ = parent / (stem + "tmp-" + std::to_string(::getpid()));
    trash_ = parent / (stem + "old-" + std::to_string(::getpid()));
    std::error_code ec;
    fs::remove_all(path_, ec);  // a leftover of this very process id only
    if (!fs::create_directory(path_, ec))
      throw InputError(destination.string() + ": cannot create the temporary directory " + path_.string() + ": " +
                       (ec ? ec.message() : "it exists"));
  }
  ~StagingDirectory() {
    std::error_code ec;
    if (!committed_) fs::remove_all(path_, ec);
  }
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;
  const fs::path& path() const { return path_; }

  // fsyncs what was written, then renames it into place (moving an old destination aside first).
  void commit() {
    sync_tree(path_);
    std::error_code ec;
    const bool replace = fs::exists(destination_);
    if (replace) {
      if (!overwrite_) throw InputError(destination_.string() + ": already exists (use --force to replace it)");
      fs::rename(destination_, trash_, ec);
      if (ec) throw InputError(destination_.string() + ": cannot move the old directory aside: " + ec.message());
    }
    fs::rename(path_, destination_, ec);
    if (ec) {
      if (replace) fs::rename(trash_, destination_, ec);
      throw InputError(destination_.string() + ": cannot rename " + path_.string() + " into place: " + ec.message());
    }
    committed_ = true;
    sync_path(destination_.has_parent_path() ? destination_.parent_path() : fs::path("."));
    if (replace) fs::remove_all(trash_, ec);
  }

 private:
  static void sync_path(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw InputError(path.string() + ": cannot open to flush: " + io::detail::os_error(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) throw InputError(path.string() + ": cannot flush: " + io::detail::os_error(err));
  }
  static void sync_tree(const fs::path& root) {
    for (const auto& entry : fs::recursive_directory_iterator(root)) sync_path(entry.path());
    sync_path(root);
  }

  fs::path destination_, path_, trash_;
  bool overwrite_;
  bool committed_ = false;
};

void check_destination(const std::string& model_dir, const std::string& out_dir, bool overwrite) {
  if (out_dir.empty()) throw InputError("no output directory given (-o OUT_DIR)");
  const fs::path in = fs::weakly_canonical(model_dir), out = fs::weakly_canonical(out_dir);
  const auto [mismatch_in, mismatch_out] = std::mismatch(in.begin(), in.end(), out.begin(), out.end());
  if (mismatch_in == in.end())
    throw InputError(out_dir + ": the output directory must not be the input model directory " + model_dir +
                     " or lie inside it (the input is never modified)");
  if (fs::exists(out) && !overwrite) throw InputError(out_dir + ": already exists (use --force to replace it)");
  if (fs::exists(out) && !fs::is_directory(out)) throw InputError(out_dir + ": exists and is not a directory");
}

void copy_file_synced(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  // copy_file follows symlinks (HF cache directories link every file into a blob store): the new
  // directory gets real files.
  fs::copy_file(from, to, ec);
  if (ec) throw InputError(from.string() + ": cannot copy to " + to.string() + ": " + ec.message());
}

// Copies `from` into `to` (recursively), except the relative paths in `skip`.
void copy_tree(const fs::path& from, const fs::path& to, const fs::path& relative, const std::set<fs::path>& skip) {
  for (const auto& entry : fs::directory_iterator(from / relative)) {
    const fs::path rel = relative / entry.path().filename();
    if (skip.count(rel)) continue;
    std::error_code ec;
    if (fs::is_directory(entry.path(), ec)) {
      fs::create_directory(to / rel);
      copy_tree(from, to, rel, skip);
    } else {
      copy_file_synced(entry.path(), to / rel);
    }
  }
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw InputError(path.string() + ": cannot write");
}

// Everything needed to write one output directory.
struct Plan {
  const std::string& model_dir;
  const io::Checkpoint& checkpoint;
  BaseFingerprint base;                            // every tensor the applied patches touch
  std::map<std::string, at::Tensor> base_bytes;    // tensor -> base value (stored dtype and layout)
  std::vector<const Patch*> applied;               // oldest first
  std::map<std::string, at::Tensor> base_restore;  // tensors no patch touches any more -> base value
  std::map<std::string, std::string> sources;      // checksum -> file name, for recorded patches
};

// The file name a patch was applied from: kept from the record for patches applied earlier (whose
// Patch was loaded from the directory's copy), else the name of the file it was loaded from.
std::string source_name(const Plan& plan, const Patch& patch) {
  const auto it = plan.sources.find(patch.checksum());
  if (it != plan.sources.end()) return it->second;
  return patch.source().empty() ? "" : fs::path(patch.source()).filename().string();
}

// The new stored bytes of every tensor the output changes.
std::map<std::string, at::Tensor> new_values(const Plan& plan) {
  std::map<std::string, at::Tensor> values;
  for (const auto& [name, base] : plan.base_bytes) {
    values[name] = patched_value(base, plan.applied, name).to(base.scalar_type()).contiguous();
    if (!at::isfinite(values[name]).all().item<bool>())
      throw InputError("tensor " + io::detail::quoted(name) + ": base + dW overflows " +
                       dtype_string(base.scalar_type()));
  }
  for (const auto& [name, base] : plan.base_restore) values[name] = base.contiguous();
  return values;
}

// Rewrites every shard that holds a changed tensor, keeping tensor order and metadata.
std::set<fs::path> write_changed_shards(const Plan& plan, const std::map<std::string, at::Tensor>& values,
                                        const fs::path& staging) {
  std::set<fs::path> written;
  for (const auto& file : plan.checkpoint.files()) {
    bool changed = false;
    for (const auto& view : file.tensors()) changed = changed || values.count(view.name);
    if (!changed) continue;
    std::vector<io::TensorToWrite> tensors;
    for (const auto& view : file.tensors()) {
      const auto it = values.find(view.name);
      if (it == values.end()) {
        tensors.push_back({view.name, view.dtype, view.shape, view.data, view.nbytes});
      } else {
        const at::Tensor& t = it->second;
        if (t.nbytes() != view.nbytes) throw Error("patched tensor " + view.name + " changed size");
        tensors.push_back({view.name, view.dtype, view.shape, t.data_ptr(), t.nbytes()});
      }
    }
    const fs::path rel = fs::relative(file.path(), plan.model_dir);
    fs::create_directories((staging / rel).parent_path());
    io::write_safetensors((staging / rel).string(), tensors, file.metadata());
    written.insert(rel);
  }
  return written;
}

// graft_patches.json + graft_patches/ (base copy, patch copies) for the patches still applied.
void write_record(const Plan& plan, const std::map<std::string, at::Tensor>& values, const fs::path& staging) {
  fs::create_directory(staging / kRecordDataDir);
  std::vector<std::pair<std::string, at::Tensor>> base;
  for (const auto& [name, t] : plan.base_bytes) base.emplace_back(name, t.contiguous());
  // Larger elements first keeps every tensor aligned to its element size (see write_safetensors).
  std::stable_sort(base.begin(), base.end(),
                   [](const auto& a, const auto& b) { return a.second.element_size() > b.second.element_size(); });
  std::vector<io::TensorToWrite> tensors;
  for (const auto& [name, t] : base)
    tensors.push_back({name, to_io_dtype(t.scalar_type()), t.sizes().vec(), t.data_ptr(), t.nbytes()});
  io::write_safetensors((staging / kBaseCopyFile).string(), tensors);

  Json applied = Json::array();
  for (const Patch* p : plan.applied) {
    p->save((staging / patch_copy_file(p->checksum())).string());
    applied.push_back({{"checksum", p->checksum()},
                       {"file", patch_copy_file(p->checksum())},
                       {"source", source_name(plan, *p)},
                       {"method", p->provenance().method},
                       {"created", p->created()}});
  }
  Json written = Json::object();
  for (const auto& [name, base_value] : plan.base_bytes) {
    const at::Tensor& t = values.at(name);
    written[name] = io::Sha256::hex_of(t.data_ptr(), t.nbytes());
  }
  const Json record = {{"format", kRecordFormatName},
                       {"format_version", kRecordFormatVersion},
                       {"base", base_json(plan.base)},
                       {"written", written},
                       {"applied", applied}};
  write_text_file(staging / kPatchRecordFile, record.dump(2) + "\n");
}

void write_directory(const Plan& plan, const std::string& out_dir, bool overwrite) {
  const auto values = new_values(plan);
  StagingDirectory staging(out_dir, overwrite);
  std::set<fs::path> skip = write_changed_shards(plan, values, staging.path());
  skip.insert(kPatchRecordFile);
  skip.insert(kRecordDataDir);
  copy_tree(plan.model_dir, staging.path(), fs::path(), skip);
  if (!plan.applied.empty()) write_record(plan, values, staging.path());
  staging.commit();
}

// The architecture of a model directory, with tensor names as its checkpoint spells them.
std::unique_ptr<arch::Architecture> architecture_for(const std::string& model_dir, const io::Checkpoint& checkpoint) {
  auto arch = arch::Architecture::from_model_dir(model_dir);
  arch->adopt_checkpoint_prefix(checkpoint.names());
  return arch;
}

// The base value of `tensor`: the record's base copy when a recorded patch touched it, else the
// checkpoint's bytes (which are then the base's).
at::Tensor base_value(const io::Checkpoint& checkpoint, const std::optional<io::SafetensorsFile>& base_copy,
                      const std::string& tensor) {
  if (base_copy && base_copy->contains(tensor)) return tensor_from_view(base_copy->get(tensor));
  return tensor_from_view(checkpoint.get(tensor));
}

std::optional<io::SafetensorsFile> open_base_copy(const std::optional<detail::Record>& record) {
  if (!record) return std::nullopt;
  return io::SafetensorsFile::open(record->base_copy_path);
}

// Runs `body`, turning std::filesystem errors (an unreadable directory, a full disk) into InputError
// so that the command line reports them as bad input, on one line.
template <typename Body>
auto with_filesystem_errors(const std::string& context, Body body) -> decltype(body()) {
  try {
    return body();
  } catch (const fs::filesystem_error& e) {
    throw InputError(context + ": " + e.what());
  }
}

}  // namespace

// ----- the record -----

namespace detail {

std::optional<Record> read_record(const std::string& model_dir, const io::Checkpoint& checkpoint) {
  const fs::path path = fs::path(model_dir) / kPatchRecordFile;
  if (!fs::exists(path)) return std::nullopt;
  const Json j = read_json_file(path);
  if (!j.is_object() || j.value("format", "") != kRecordFormatName)
    fail_record(path, "not a graft patch record (format is not " + io::detail::quoted(kRecordFormatName) + ")");
  const Json& version = require(path, j, "format_version", &Json::is_number_integer);
  if (version.get<int64_t>() != kRecordFormatVersion)
    fail_record(path, "record format version " + version.dump() + " (this graft reads " +
                          std::to_string(kRecordFormatVersion) + ")");
  Record record;
  record.base = detail::read_base_fingerprint(detail::JsonFields(path.string() + ": "),
                                              require(path, j, "base", &Json::is_object));
  record.base_copy_path = (fs::path(model_dir) / kBaseCopyFile).string();

  // The base copy must still be the base: same bytes the fingerprints name.
  const io::SafetensorsFile base_copy = io::SafetensorsFile::open(record.base_copy_path);
  for (const auto& [name, t] : record.base.tensors) {
    if (!base_copy.contains(name))
      fail_record(record.base_copy_path, "no base copy of tensor " + io::detail::quoted(name));
    if (stored_tensor_sha256(base_copy.get(name)) != t.sha256)
      fail_record(record.base_copy_path,
                  "the base copy of " + io::detail::quoted(name) + " does not match its fingerprint");
  }
  // The touched tensors must still hold what graft wrote, or the record no longer describes them.
  for (const auto& [name, sha] : require(path, j, "written", &Json::is_object).items()) {
    if (!sha.is_string() || record.base.tensors.count(name) == 0)
      fail_record(path, "malformed \"written\" entry for " + io::detail::quoted(name));
    if (stored_tensor_sha256(checkpoint.get(name)) != sha.get<std::string>())
      throw FormatError(model_dir + ": tensor " + io::detail::quoted(name) +
                        " was changed after graft patched this directory (" + kPatchRecordFile +
                        " no longer describes it)");
    record.written[name] = sha.get<std::string>();
  }
  if (record.written.size() != record.base.tensors.size())
    fail_record(path, "\"written\" and \"base.tensors\" list different tensors");
  for (const auto& a : require(path, j, "applied", &Json::is_array)) {
    const std::string checksum = require(path, a, "checksum", &Json::is_string).get<std::string>();
    const std::string file = require(path, a, "file", &Json::is_string).get<std::string>();
    if (file != patch_copy_file(checksum))
      fail_record(path, "patch file " + io::detail::quoted(file) + " is not where graft puts it");
    Patch patch = Patch::load((fs::path(model_dir) / file).string());
    if (patch.checksum() != checksum)
      fail_record(path, "patch file " + io::detail::quoted(file) + " does not have the recorded checksum");
    record.sources[checksum] = a.contains("source") && a["source"].is_string() ? a["source"].get<std::string>() : "";
    record.applied.push_back(std::move(patch));
  }
  if (record.applied.empty()) fail_record(path, "records no patch");
  return record;
}

}  // namespace detail

nlohmann::json read_patch_record(const std::string& model_dir) {
  const io::Checkpoint checkpoint = io::Checkpoint::open(model_dir);
  const fs::path path = fs::path(model_dir) / kPatchRecordFile;
  if (!detail::read_record(model_dir, checkpoint)) return nullptr;
  return read_json_file(path);  // validated just above
}

// ----- apply / revert / verify -----

void apply_patches_to_directory(const std::string& model_dir, const std::vector<Patch>& patches,
                                const std::string& out_dir, const DirectoryWriteOptions& options) {
  return with_filesystem_errors(out_dir, [&] {
    if (patches.empty()) throw InputError("no patch to apply");
    check_destination(model_dir, out_dir, options.overwrite);
    const io::Checkpoint checkpoint = io::Checkpoint::open(model_dir);
    const auto arch = architecture_for(model_dir, checkpoint);
    const auto record = detail::read_record(model_dir, checkpoint);
    const detail::Record* recorded = record ? &*record : nullptr;

    Plan plan{model_dir, checkpoint, {}, {}, {}, {}, {}};
    plan.base.model_type = arch->spec().model_type;
    plan.base.family = arch::family_name(arch->spec().family);
    std::set<std::string> checksums;
    if (record) {
      plan.base = record->base;
      plan.sources = record->sources;
      for (const auto& p : record->applied) plan.applied.push_back(&p), checksums.insert(p.checksum());
    }
    for (const auto& patch : patches) {
      const std::string why = detail::mismatch(*arch, checkpoint, recorded, patch);
      if (!why.empty())
        throw InputError("patch " + detail::describe(patch) + " does not belong to " + model_dir + ": " + why);
      if (!checksums.insert(patch.checksum()).second)
        throw InputError("patch " + detail::describe(patch) + " is already applied to " + model_dir);
      for (const auto& [name, t] : patch.base().tensors) plan.base.tensors.emplace(name, t);
      plan.applied.push_back(&patch);
    }
    const auto base_copy = open_base_copy(record);
    for (const auto& [name, t] : plan.base.tensors) {
      plan.base_bytes[name] = base_value(checkpoint, base_copy, name);
      rounding_of(to_io_dtype(plan.base_bytes[name].scalar_type()), name);  // refuses non-floating tensors
    }
    write_directory(plan, out_dir, options.overwrite);
  });
}

void revert_patch_in_directory(const std::string& model_dir, const Patch& patch, const std::string& out_dir,
                               const DirectoryWriteOptions& options) {
  return with_filesystem_errors(out_dir, [&] {
    check_destination(model_dir, out_dir, options.overwrite);
    const io::Checkpoint checkpoint = io::Checkpoint::open(model_dir);
    const auto record = detail::read_record(model_dir, checkpoint);
    if (!record)
      throw InputError(model_dir + ": no " + kPatchRecordFile + ": graft applied no patch here, nothing to revert");
    bool found = false;
    Plan plan{model_dir, checkpoint, {}, {}, {}, {}, {}};
    plan.base.model_type = record->base.model_type;
    plan.base.family = record->base.family;
    plan.sources = record->sources;
    for (const auto& p : record->applied) {
      if (p.checksum() == patch.checksum()) {
        found = true;
        continue;
      }
      plan.applied.push_back(&p);
      for (const auto& e : p.entries()) plan.base.tensors.emplace(e.tensor, record->base.tensors.at(e.tensor));
    }
    if (!found) {
      std::string listed;
      for (const auto& p : record->applied) listed += (listed.empty() ? "" : ", ") + p.checksum().substr(0, 12);
      throw InputError("patch " + detail::describe(patch) + " is not applied to " + model_dir + " (its record lists " +
                       listed + ")");
    }
    const auto base_copy = open_base_copy(record);
    for (const auto& [name, t] : record->base.tensors) {
      at::Tensor base = base_value(checkpoint, base_copy, name);
      if (plan.base.tensors.count(name)) plan.base_bytes[name] = base;
      else plan.base_restore[name] = base;  // no remaining patch touches it: the base bytes, exactly
    }
    write_directory(plan, out_dir, options.overwrite);
  });
}

VerifyReport verify_patch_in_directory(const std::string& model_dir, const Patch& patch) {
  return with_filesystem_errors(model_dir, [&] {
    const io::Checkpoint checkpoint = io::Checkpoint::open(model_dir);
    const auto arch = architecture_for(model_dir, checkpoint);
    const auto record = detail::read_record(model_dir, checkpoint);
    VerifyReport report;
    std::vector<const Patch*> applied;
    if (record)
      for (const auto& p : record->applied) {
        applied.push_back(&p);
        report.applied_checksums.push_back(p.checksum());
        report.recorded = report.recorded || p.checksum() == patch.checksum();
      }
    report.mismatch = detail::mismatch(*arch, checkpoint, record ? &*record : nullptr, patch);
    report.belongs = report.mismatch.empty();
    if (!report.belongs) return report;

    // What the weights would be with this patch applied: base + every recorded dW (+ this one's).
    if (!report.recorded) applied.push_back(&patch);
    const auto base_copy = open_base_copy(record);
    bool within = true;
    for (const auto& e : patch.entries()) {
      const io::TensorView& view = checkpoint.get(e.tensor);
      const Rounding rounding = rounding_of(view.dtype, e.tensor);
      const at::Tensor expected = patched_value(base_value(checkpoint, base_copy, e.tensor), applied, e.tensor);
      const at::Tensor error = (tensor_from_view(view).to(at::kDouble) - expected).abs();
      // Twice what one rounding to nearest can err by: the sums are not always done in the same order.
      const at::Tensor allowed = expected.abs() * rounding.relative + rounding.absolute;
      within = within && at::le(error, allowed).all().item<bool>();
      const double worst = error.max().item<double>();
      if (worst >= report.max_error) {
        report.max_error = worst;
        report.tolerance = allowed.flatten()[error.flatten().argmax()].item<double>();
      }
    }
    report.applied = report.recorded && within;
    return report;
  });
}

}  // namespace graft::edits
