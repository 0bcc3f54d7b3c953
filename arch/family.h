// The model families graft runs, in a header of their own so that the tensor-role table
// (arch/tensor_roles.h) can say which families carry a role without the whole architecture layer.
#pragma once

namespace graft::arch {

enum class Family { Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, Gemma4, GPT2 };

const char* family_name(Family f);

}  // namespace graft::arch
