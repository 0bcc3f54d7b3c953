// The safetensors dtype strings, their sizes, and the one numel() both readers and writers use.
#include <algorithm>
#include <array>
#include <utility>

#include "core/error.h"
#include "core/io/safetensors.h"

namespace graft::io {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;  // exactly as it appears in a safetensors header
  size_t size;       // bytes per element
};

constexpr std::array<DTypeInfo, 12> kDTypes = {{
    {DType::F64, "F64", 8},
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::F8_E5M2, "F8_E5M2", 1},
}};

const DTypeInfo& info(DType d) {
  for (const auto& entry : kDTypes)
    if (entry.dtype == d) return entry;
  // Only reachable through a DType cast from an out-of-range integer.
  throw Error("graft::io: invalid DType value " + std::to_string(static_cast<int>(d)));
}

std::string known_dtype_names() {
  std::string names;
  for (const auto& entry : kDTypes) names += (names.empty() ? "" : ", ") + std::string(entry.name);
  return names;
}

}  // namespace

DType parse_dtype(const std::string& s, const std::string& context) {
  for (const auto& entry : kDTypes)
    if (s == entry.name) return entry.dtype;
  throw FormatError(context + ": unknown dtype \"" + s + "\" (known: " + known_dtype_names() + ")");
}

const char* dtype_name(DType d) { return info(d).name; }

size_t dtype_size(DType d) { return info(d).size; }

int64_t TensorView::numel() const {
  // The parser has checked that the product fits in int64 unless a dim is 0, and then the other dims
  // may be anything: return 0 before multiplying. Unsigned arithmetic keeps a hand-built view with
  // an absurd shape from being undefined behaviour.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t n = 1;
  for (int64_t dim : shape) n *= static_cast<uint64_t>(dim);
  return static_cast<int64_t>(n);
}

}  // namespace graft::io
