// write_safetensors: the file Python's safetensors writes, written so that no reader ever sees half
// of it. The bytes go to `<path>.tmp.<pid>` in the destination's directory (same filesystem, so the
// rename is atomic), are fsynced, and only then renamed over `path`. Any failure removes the
// temporary file and leaves `path` as it was. Renaming (rather than rewriting in place) also keeps
// existing mappings of the old file valid: a checkpoint can be patched and saved over itself.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/safetensors.h"

namespace graft::io {
namespace {

using Json = nlohmann::json;  // only to quote and escape strings

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& problem) {
  throw InputError(path + ": cannot write tensor " + detail::quoted(name) + ": " + problem);
}

// Refuses anything the reader would reject, before a byte is written.
void validate(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") fail_tensor(path, t.name, "the name is reserved for the metadata");
    if (!seen.insert(t.name).second) fail_tensor(path, t.name, "the name appears twice");
    uint64_t expected = dtype_size(t.dtype);
    bool overflow = false;
    for (int64_t dim : t.shape) {
      if (dim < 0) fail_tensor(path, t.name, "negative dimension in shape " + detail::shape_string(t.shape));
      overflow = overflow || __builtin_mul_overflow(expected, static_cast<uint64_t>(dim), &expected);
    }
    const bool empty = std::find(t.shape.begin(), t.shape.end(), 0) != t.shape.end();
    if (empty) expected = 0;
    if ((overflow && !empty) || expected != t.nbytes)
      fail_tensor(path, t.name,
                  std::to_string(t.nbytes) + " bytes given but " + dtype_name(t.dtype) + " " +
                      detail::shape_string(t.shape) + " needs " +
                      (overflow && !empty ? std::string("more than 2^64") : std::to_string(expected)));
    if (t.nbytes > 0 && t.data == nullptr) fail_tensor(path, t.name, "no data (null pointer)");
  }
}

// A JSON string literal (quotes, escapes); throws InputError for bytes that are not UTF-8.
std::string json_string(const std::string& path, const std::string& text) {
  try {
    return Json(text).dump();
  } catch (const Json::type_error&) {
    throw InputError(path + ": cannot write: " + detail::quoted(text) +
                     " is not valid UTF-8 (tensor names and metadata must be)");
  }
}

// The JSON header, laid out as Python's writer does it: "__metadata__" first when present (keys
// sorted), then one entry per tensor with keys dtype, shape, data_offsets; compact; padded with
// spaces so that the data section starts on an 8-byte boundary (8-byte length prefix + header).
// Assembled as text rather than through a JSON object, whose ordered variant inserts in linear time.
std::string build_header(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (auto it = metadata.begin(); it != metadata.end(); ++it)
      header += (it == metadata.begin() ? "" : ",") + json_string(path, it->first) + ":" +
                json_string(path, it->second);
    header += "}";
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (header.size() > 1) header += ",";
    header += json_string(path, t.name) + ":{\"dtype\":\"" + dtype_name(t.dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.nbytes) + "]}";
    offset += t.nbytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

std::string length_prefix(uint64_t length) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return bytes;
}

// The temporary file: removed on destruction unless commit() renamed it into place.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), temp_path_(path + ".tmp." + std::to_string(::getpid())) {
    do {
      fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) fail("cannot create " + temp_path_, errno);
  }
  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size) {
    const auto* p = static_cast<const char*>(data);
    // write() may write less than asked (and Linux caps one call just under 2 GiB): loop.
    constexpr size_t kMaxChunk = size_t{1} << 30;
    while (size > 0) {
      const ssize_t written = ::write(fd_, p, std::min(size, kMaxChunk));
      if (written < 0 && errno == EINTR) continue;
      if (written < 0) fail("cannot write " + temp_path_, errno);
      p += written;
      size -= static_cast<size_t>(written);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) fail("cannot flush " + temp_path_, errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close " + temp_path_, errno);
    if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename " + temp_path_ + " to " + path_, errno);
    committed_ = true;
    sync_directory();
  }

 private:
  [[noreturn]] void fail(const std::string& what, int errnum) {
    throw InputError(path_ + ": " + what + ": " + detail::os_error(errnum));
  }

  // Makes the rename itself durable. Best effort: the file is already in place, so a failure here
  // must not be reported as "nothing was written".
  void sync_directory() {
    std::string dir = std::filesystem::path(path_).parent_path().string();
    if (dir.empty()) dir = ".";
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
  }

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  validate(path, tensors);
  const std::string header = build_header(path, tensors, metadata);
  const std::string prefix = length_prefix(header.size());
  AtomicFile out(path);
  out.write(prefix.data(), prefix.size());
  out.write(header.data(), header.size());
  for (const auto& t : tensors) out.write(t.data, t.nbytes);
  out.commit();
}

}  // namespace graft::io
