// UTF-8 helpers and the Unicode properties the tokenizer needs (categories, normalization).
// The data comes from unicode_tables.cpp; gen_unicode_tables.py explains the Unicode versions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace graft::tokenizer_detail {

constexpr uint8_t kFlagLetter = 1;      // \p{L}
constexpr uint8_t kFlagNumber = 2;      // \p{N}
constexpr uint8_t kFlagWhitespace = 4;  // \s (White_Space), in Oniguruma and in Rust regex
constexpr uint8_t kFlagWord = 8;        // \w of the Rust regex crate (used by added tokens)

// The flags above for one code point; 0 for anything out of range.
uint8_t unicode_flags(uint32_t cp);

inline bool is_letter(uint32_t cp) { return (unicode_flags(cp) & kFlagLetter) != 0; }
inline bool is_number(uint32_t cp) { return (unicode_flags(cp) & kFlagNumber) != 0; }
inline bool is_whitespace(uint32_t cp) { return (unicode_flags(cp) & kFlagWhitespace) != 0; }
inline bool is_word_char(uint32_t cp) { return (unicode_flags(cp) & kFlagWord) != 0; }

// Byte length of the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte).
inline std::size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// Decodes the code point at s[pos] of a string already known to be valid UTF-8.
inline uint32_t decode_utf8_at(std::string_view s, std::size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return b0;
  const auto cont = [&](std::size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[pos + k]) & 0x3F); };
  if (b0 >= 0xF0) return (static_cast<uint32_t>(b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
  if (b0 >= 0xE0) return (static_cast<uint32_t>(b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2);
  return (static_cast<uint32_t>(b0 & 0x1F) << 6) | cont(1);
}

void append_utf8(std::string& out, uint32_t cp);

// Byte offset of the first ill-formed UTF-8 sequence in `s`, or std::string_view::npos.
std::size_t find_invalid_utf8(std::string_view s);

// Rust's String::from_utf8_lossy: each maximal ill-formed subpart becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Canonical combining class, as HF tokenizers' normalization tables (Unicode 9.0) have it.
uint8_t combining_class(uint32_t cp);

// One normalized code point and the index (into the input code points) it is aligned with.
struct AlignedCodePoint {
  uint32_t cp;
  std::size_t source;
};

// Canonical decomposition (NFD) or decomposition + canonical composition (NFC) of `input`.
// Each output code point carries the index of an input code point; the indices are
// non-decreasing, which is all the alignment the tokenizer needs (see Piece::origin_len).
std::vector<AlignedCodePoint> normalize_nfd(const std::vector<uint32_t>& input);
std::vector<AlignedCodePoint> normalize_nfc(const std::vector<uint32_t>& input);

}  // namespace graft::tokenizer_detail
