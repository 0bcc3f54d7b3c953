// Hand-written matchers for the pre-tokenizer regexes that real BPE tokenizers use. A general regex
// engine would need \p{L} (std::regex has none) and costs more than these direct scans; a pattern
// we do not know is reported by name instead of being guessed at.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tokenizer/piece.h"

namespace graft::tokenizer_detail {

enum class KnownPattern {
  // GPT-2 (also the ByteLevel pre-tokenizer's built-in regex):
  //   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // Qwen 2: the same with \p{N} instead of \p{N}{1,3}.
  kQwen2,
};

// The pattern a regex string spells, if it is one we know.
std::optional<KnownPattern> recognize_pattern(std::string_view regex);

// The regex strings we know, for error messages.
std::string known_pattern_list();

// All matches of `pattern` in `text` (valid UTF-8), as Oniguruma's find_iter gives them. These
// patterns match at every position, so the matches are contiguous and cover the text.
void find_pattern_matches(KnownPattern pattern, std::string_view text, std::vector<Match>& out);

}  // namespace graft::tokenizer_detail
