// HF post-processors, reduced to what encoding a single sequence needs: the ids put before and
// after it when special tokens are requested.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tokenizer/json_reader.h"

namespace graft::tokenizer_detail {

struct SpecialTokenFrame {
  std::vector<int64_t> prefix;  // e.g. BOS
  std::vector<int64_t> suffix;  // e.g. EOS
};

// TemplateProcessing (its "single" template), RobertaProcessing, BertProcessing, ByteLevel (adds
// nothing) and Sequence. A null post_processor adds nothing.
SpecialTokenFrame parse_post_processor(const json& config, const JsonWhere& where, int depth = 0);

}  // namespace graft::tokenizer_detail
