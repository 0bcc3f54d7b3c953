#include "core/tensor.h"

#include <ATen/Context.h>
#include <ATen/DeviceAccelerator.h>

#include "core/error.h"

namespace graft {

at::ScalarType to_scalar_type(io::DType dtype) {
  switch (dtype) {
    case io::DType::F64: return at::kDouble;
    case io::DType::F32: return at::kFloat;
    case io::DType::F16: return at::kHalf;
    case io::DType::BF16: return at::kBFloat16;
    case io::DType::I64: return at::kLong;
    case io::DType::I32: return at::kInt;
    case io::DType::I16: return at::kShort;
    case io::DType::I8: return at::kChar;
    case io::DType::U8: return at::kByte;
    case io::DType::BOOL: return at::kBool;
    case io::DType::F8_E4M3: return at::kFloat8_e4m3fn;
    case io::DType::F8_E5M2: return at::kFloat8_e5m2;
  }
  throw Error("unknown safetensors dtype");
}

io::DType to_io_dtype(at::ScalarType type) {
  switch (type) {
    case at::kDouble: return io::DType::F64;
    case at::kFloat: return io::DType::F32;
    case at::kHalf: return io::DType::F16;
    case at::kBFloat16: return io::DType::BF16;
    case at::kLong: return io::DType::I64;
    case at::kInt: return io::DType::I32;
    case at::kShort: return io::DType::I16;
    case at::kChar: return io::DType::I8;
    case at::kByte: return io::DType::U8;
    case at::kBool: return io::DType::BOOL;
    case at::kFloat8_e4m3fn: return io::DType::F8_E4M3;
    case at::kFloat8_e5m2: return io::DType::F8_E5M2;
    default: throw Error(std::string("tensor dtype ") + c10::toString(type) + " cannot be stored in safetensors");
  }
}

at::Tensor tensor_from_view(const io::TensorView& view) {
  const at::ScalarType type = to_scalar_type(view.dtype);
  const auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  const size_t element = io::dtype_size(view.dtype);
  const bool aligned = reinterpret_cast<uintptr_t>(view.data) % element == 0;
  if (view.nbytes == 0) return at::empty(view.shape, options);
  if (!aligned) {
    at::Tensor copy = at::empty(view.shape, options);
    std::memcpy(copy.data_ptr(), view.data, view.nbytes);
    return copy;
  }
  // The deleter owns a reference to the mapping: the tensor outlives the Checkpoint safely.
  auto keep_alive = view.file;
  return at::from_blob(
      view.data, view.shape, [keep_alive](void*) {}, options);
}

at::Device parse_device(const std::string& device) {
  at::Device parsed(at::kCPU);
  try {
    parsed = at::Device(device);
  } catch (const std::exception&) {
    throw InputError("--device \"" + device + "\": not a device (use cpu, cuda, cuda:N or mps)");
  }
  if (!parsed.is_cpu() && !parsed.is_cuda() && !parsed.is_mps())
    throw InputError("--device \"" + device + "\": not supported (use cpu, cuda, cuda:N or mps)");
  if (parsed.is_cuda() && !at::hasCUDA())
    throw InputError("--device " + device + ": this LibTorch build has no CUDA support or no GPU is visible");
  if (parsed.is_cuda() && parsed.has_index()) {
    const int gpus = at::accelerator::deviceCount();
    if (parsed.index() >= gpus)
      throw InputError("--device " + device + ": only " + std::to_string(gpus) +
                       " GPU(s) are visible (cuda:0 to cuda:" + std::to_string(gpus - 1) + ")");
  }
  if (parsed.is_mps() && !at::hasMPS())
    throw InputError("--device " + device + ": MPS is not available in this LibTorch build");
  return parsed;
}

at::ScalarType parse_dtype(const std::string& dtype) {
  if (dtype == "float32" || dtype == "f32" || dtype == "fp32" || dtype == "float") return at::kFloat;
  if (dtype == "bfloat16" || dtype == "bf16") return at::kBFloat16;
  if (dtype == "float16" || dtype == "f16" || dtype == "fp16" || dtype == "half") return at::kHalf;
  throw InputError("--dtype \"" + dtype + "\": unsupported (use float32, bfloat16 or float16)");
}

std::string dtype_string(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return c10::toString(type);
  }
}

}  // namespace graft
