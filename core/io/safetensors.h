// safetensors reading (memory-mapped, zero-copy) and writing (atomic: temporary name, then rename).
// This layer knows files, bytes and shapes only: no model, no torch. core/tensor.h turns a
// TensorView into an at::Tensor without copying.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace graft::io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2 };

// "F32" -> DType::F32; throws FormatError naming `context` for an unknown string.
DType parse_dtype(const std::string& s, const std::string& context);
const char* dtype_name(DType d);
size_t dtype_size(DType d);

// A read-only (copy-on-write) memory mapping of a whole file. Kept alive by every view into it.
class MappedFile {
 public:
  // Throws InputError naming the path and the reason for a missing, unreadable, empty or
  // non-regular file (a directory, a FIFO).
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // A MappedFile over bytes already in memory (no file behind it): the fuzz target and tests parse
  // generated buffers with it. `name` stands in for the path in error messages. `bytes` may be empty.
  static std::shared_ptr<MappedFile> from_bytes(std::vector<std::byte> bytes, const std::string& name = "<memory>");
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::byte* data() const { return data_; }
  // Mapped MAP_PRIVATE with write permission: writes stay in this process (copy-on-write) and never
  // reach the file. Used by in-memory patch application.
  std::byte* mutable_data() { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;           // true: data_ came from mmap and is unmapped by the destructor
  std::vector<std::byte> owned_;  // the bytes of from_bytes(); data_ points into it
};

// One tensor inside a mapped file.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t nbytes = 0;
  std::byte* data = nullptr;         // points into `file`'s mapping
  std::shared_ptr<MappedFile> file;  // keeps the mapping alive
  int64_t numel() const;
};

// One safetensors file: header parsed and validated at open (offsets inside the file, sizes that
// match dtype x shape, no overlaps), data mapped.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::string& path);
  // Parses and validates a file already mapped (or built with MappedFile::from_bytes: the fuzz
  // target and tests use this); `file->size()` is the whole buffer including the 8-byte length
  // prefix. Throws FormatError naming `file->path()` (and the tensor) for anything malformed.
  static SafetensorsFile parse(std::shared_ptr<MappedFile> file);

  const std::string& path() const;
  // "File order" is the order of the entries in the header, which for files written by graft or by
  // Python's safetensors is also the order of the data.
  std::vector<std::string> names() const;                              // in file order
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in file order
  bool contains(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws InputError naming file and tensor
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All weights of a model directory: `model.safetensors`, or the shards listed in
// `model.safetensors.index.json`, or (index lost) a complete set of HF-named shards
// model-0000K-of-0000N.safetensors with no tensor in two of them. Other *.safetensors files in the
// directory are never read. Missing directory or no weights: InputError; corrupt index or files:
// FormatError.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& model_dir);
  const std::string& dir() const { return dir_; }
  bool contains(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws InputError (names the tensor)
  // get() plus a shape check; the error names tensor, file, expected and actual shape.
  const TensorView& get(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  std::vector<std::string> names() const;  // sorted
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::string dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::pair<size_t, size_t>> where_;  // name -> (file, tensor)
};

// A tensor to write: raw bytes of `dtype` x `shape`, row-major.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes a safetensors file to `path` atomically (a temporary file in the same directory, fsync,
// rename). Tensors are written in the given order, 8-byte aligned header.
// The data is contiguous, with no padding between tensors (the Python reader requires that): to keep
// every tensor aligned to its element size, pass them by descending dtype size, as Python does.
// The header is byte-for-byte what Python's safetensors writes for the same order and metadata.
// Throws InputError naming the file (and tensor): nbytes != numel x dtype size, a duplicate or
// reserved name, non-UTF-8 text, or any I/O failure; then `path` is untouched and no temporary
// file remains.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace graft::io
