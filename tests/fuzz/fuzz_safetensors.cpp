// libFuzzer target for the safetensors parser: any bytes must either parse into views that lie
// inside the buffer and agree with dtype x shape, or end in a graft::Error. Anything else (a crash,
// an ASan report, another exception type escaping) is a bug.
//
// The input is copied into a buffer of exactly its size, so ASan flags a read even one byte past it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/io/safetensors.h"

namespace {

// Reads every byte of the view (ASan checks each access) and checks the parser's promises.
void touch(const graft::io::TensorView& view, const graft::io::MappedFile& file) {
  const std::byte* begin = file.data();
  const std::byte* end = begin + file.size();
  if (view.nbytes > 0 && (view.data < begin || view.data > end || view.nbytes > static_cast<size_t>(end - view.data)))
    __builtin_trap();
  if (view.nbytes != static_cast<size_t>(view.numel()) * graft::io::dtype_size(view.dtype)) __builtin_trap();
  unsigned sum = 0;
  for (size_t i = 0; i < view.nbytes; ++i) sum += std::to_integer<unsigned>(view.data[i]);
  // Keeps the loop from being optimised away.
  asm volatile("" : : "r"(sum));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::byte> bytes(size);
  if (size > 0) std::memcpy(bytes.data(), data, size);
  try {
    const auto file = graft::io::SafetensorsFile::parse(graft::io::MappedFile::from_bytes(std::move(bytes), "fuzz"));
    for (const auto& view : file.tensors()) {
      touch(view, *view.file);
      if (&file.get(view.name) != &view) __builtin_trap();  // lookup by name finds the same view
      graft::io::dtype_name(view.dtype);
    }
    for (const auto& [key, value] : file.metadata()) (void)(key.size() + value.size());
  } catch (const graft::Error&) {
    // Rejected input: the expected outcome for most of what the fuzzer produces.
  }
  return 0;
}
