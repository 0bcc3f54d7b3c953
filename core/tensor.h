// Bridges core/io (bytes) and LibTorch (tensors), and parses the user's device and dtype strings.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "core/io/safetensors.h"

namespace graft {

at::ScalarType to_scalar_type(io::DType dtype);
io::DType to_io_dtype(at::ScalarType type);  // throws Error for a type safetensors cannot hold

// A tensor over the mapped bytes, without copying: the tensor keeps the mapping alive. Views whose
// data is not aligned to the element size are copied (a misaligned float* is undefined behaviour).
at::Tensor tensor_from_view(const io::TensorView& view);

// "cpu", "cuda", "cuda:1", "mps": an InputError naming the argument if LibTorch cannot use it here.
at::Device parse_device(const std::string& device);
// "float32"/"f32"/"fp32", "bfloat16"/"bf16", "float16"/"f16"/"fp16".
at::ScalarType parse_dtype(const std::string& dtype);
std::string dtype_string(at::ScalarType type);  // "float32", "bfloat16", ...

}  // namespace graft
