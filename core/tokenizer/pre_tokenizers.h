// HF pre-tokenizers: ByteLevel, Metaspace, Split (known regexes and literal strings), Digits and
// Sequence. Each one splits every non-token piece and drops empty results, like HF.
#pragma once

#include <memory>
#include <vector>

#include "core/tokenizer/json_reader.h"
#include "core/tokenizer/piece.h"

namespace graft::tokenizer_detail {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their splits; added-token pieces pass through untouched.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

// nullptr for a JSON null. Unknown types and unknown regexes are FormatErrors naming them.
std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& config, const JsonWhere& where, int depth = 0);

// GPT-2's reversible map of the 256 byte values onto printable characters (UTF-8 encoded).
const std::vector<std::string>& byte_to_unicode();

}  // namespace graft::tokenizer_detail
