// MappedFile: a whole file mapped copy-on-write, or a byte buffer dressed up as one.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/safetensors.h"

namespace graft::io {
namespace {

// Closes the descriptor on every path out of open(); the mapping outlives it.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void throw_os_error(const std::string& path, const std::string& what, int errnum) {
  throw InputError(path + ": " + what + ": " + detail::os_error(errnum));
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_os_error(path, "cannot open", errno);
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_os_error(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) throw_os_error(path, "cannot map", EISDIR);
  // A FIFO or a device has no size to map; say so instead of failing later in mmap.
  if (!S_ISREG(st.st_mode)) throw InputError(path + ": cannot map: not a regular file");
  if (st.st_size == 0) throw InputError(path + ": cannot map: the file is empty");

  const size_t size = static_cast<size_t>(st.st_size);
  // MAP_PRIVATE + PROT_WRITE: in-memory patching gets copy-on-write pages and never reaches the
  // file. MAP_NORESERVE: a writable private mapping would otherwise be charged in full against the
  // commit limit (tens of GB for a large checkpoint) although only patched pages are ever copied.
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  if (address == MAP_FAILED) throw_os_error(path, "cannot map", errno);

  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->data_ = static_cast<std::byte*>(address);
  file->size_ = size;
  file->mapped_ = true;
  return file;
}

std::shared_ptr<MappedFile> MappedFile::from_bytes(std::vector<std::byte> bytes, const std::string& name) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = name;
  file->owned_ = std::move(bytes);
  file->data_ = file->owned_.empty() ? nullptr : file->owned_.data();
  file->size_ = file->owned_.size();
  return file;
}

MappedFile::~MappedFile() {
  if (mapped_ && data_ != nullptr) ::munmap(data_, size_);
}

}  // namespace graft::io
