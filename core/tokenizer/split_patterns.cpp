#include "core/tokenizer/split_patterns.h"

#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {
namespace {

constexpr std::string_view kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Classes of the character at a position, decoded once.
struct Char {
  uint32_t cp = 0;
  std::size_t len = 0;  // 0 at the end of the text
  uint8_t flags = 0;

  bool at_end() const { return len == 0; }
  bool letter() const { return (flags & kFlagLetter) != 0; }
  bool number() const { return (flags & kFlagNumber) != 0; }
  bool space() const { return (flags & kFlagWhitespace) != 0; }
  // [^\s\p{L}\p{N}]
  bool other() const { return len != 0 && (flags & (kFlagLetter | kFlagNumber | kFlagWhitespace)) == 0; }
  bool newline() const { return cp == '\r' || cp == '\n'; }
};

class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  Char at(std::size_t pos) const {
    Char c;
    if (pos >= text_.size()) return c;
    const auto lead = static_cast<unsigned char>(text_[pos]);
    c.len = utf8_sequence_length(lead);
    c.cp = lead < 0x80 ? lead : decode_utf8_at(text_, pos);
    c.flags = unicode_flags(c.cp);
    return c;
  }

  // End of the run of characters satisfying `pred` from `pos`, at most `max_chars` of them.
  template <typename Pred>
  std::size_t run(std::size_t pos, Pred pred, std::size_t max_chars = SIZE_MAX) const {
    for (std::size_t n = 0; n < max_chars; ++n) {
      const Char c = at(pos);
      if (c.at_end() || !pred(c)) break;
      pos += c.len;
    }
    return pos;
  }

  std::size_t size() const { return text_.size(); }
  char byte(std::size_t pos) const { return pos < text_.size() ? text_[pos] : '\0'; }

 private:
  std::string_view text_;
};

bool is_letter_char(const Char& c) { return c.letter(); }
bool is_number_char(const Char& c) { return c.number(); }
bool is_other_char(const Char& c) { return c.other(); }
bool is_newline_char(const Char& c) { return c.newline(); }

// 's|'t|'re|'ve|'m|'ll|'d, case-sensitive (GPT-2). Returns the end, or 0 for no match.
std::size_t match_contraction(const Scanner& s, std::size_t pos) {
  if (s.byte(pos) != '\'') return 0;
  const char a = s.byte(pos + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
  const char b = s.byte(pos + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
  return 0;
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d). Oniguruma folds case with Unicode rules; the only non-ASCII
// character that folds onto one of these letters is U+017F LATIN SMALL LETTER LONG S (-> s).
std::size_t match_contraction_ignore_case(const Scanner& s, std::size_t pos) {
  if (s.byte(pos) != '\'') return 0;
  const Char first = s.at(pos + 1);
  if (first.at_end()) return 0;
  const auto lower = [](uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp; };
  const uint32_t a = first.cp == 0x17F ? 's' : lower(first.cp);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 1 + first.len;
  const Char second = s.at(pos + 1 + first.len);
  const uint32_t b = second.at_end() ? 0 : lower(second.cp);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
    return pos + 1 + first.len + second.len;
  }
  return 0;
}

// \s+(?!\S)|\s+ from a whitespace character at `pos`. The first alternative backtracks to leave the
// last space for the next word, unless the run ends the text; it fails on a single space, and the
// second alternative then takes that space alone.
std::size_t match_trailing_space(const Scanner& s, std::size_t pos) {
  std::size_t end = pos;
  std::size_t last_start = pos;
  while (true) {
    const Char c = s.at(end);
    if (c.at_end() || !c.space()) break;
    last_start = end;
    end += c.len;
  }
  if (end == s.size()) return end;
  return last_start > pos ? last_start : end;
}

std::size_t match_gpt2(const Scanner& s, std::size_t pos) {
  if (const std::size_t end = match_contraction(s, pos)) return end;
  const Char c = s.at(pos);
  if (c.cp == ' ') {
    const Char next = s.at(pos + 1);
    if (next.letter()) return s.run(pos + 1, is_letter_char);  // " ?\p{L}+"
    if (next.number()) return s.run(pos + 1, is_number_char);  // " ?\p{N}+"
    if (next.other()) return s.run(pos + 1, is_other_char);    // " ?[^\s\p{L}\p{N}]+"
  }
  if (c.letter()) return s.run(pos, is_letter_char);
  if (c.number()) return s.run(pos, is_number_char);
  if (c.other()) return s.run(pos, is_other_char);
  return match_trailing_space(s, pos);
}

std::size_t match_llama3(const Scanner& s, std::size_t pos, std::size_t max_digits) {
  if (const std::size_t end = match_contraction_ignore_case(s, pos)) return end;
  const Char c = s.at(pos);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!c.letter() && !c.number() && !c.newline() && s.at(pos + c.len).letter()) {
    return s.run(pos + c.len, is_letter_char);
  }
  if (c.letter()) return s.run(pos, is_letter_char);
  // \p{N}{1,3} (Llama 3) or \p{N} (Qwen 2)
  if (c.number()) return s.run(pos, is_number_char, max_digits);
  // " ?[^\s\p{L}\p{N}]+[\r\n]*"
  if (c.cp == ' ' && s.at(pos + 1).other()) return s.run(s.run(pos + 1, is_other_char), is_newline_char);
  if (c.other()) return s.run(s.run(pos, is_other_char), is_newline_char);
  // \s*[\r\n]+ : the greedy \s* backs off to the last newline of the whitespace run.
  std::size_t end = pos;
  std::size_t after_last_newline = 0;
  while (true) {
    const Char w = s.at(end);
    if (w.at_end() || !w.space()) break;
    end += w.len;
    if (w.newline()) after_last_newline = end;
  }
  if (after_last_newline != 0) return after_last_newline;
  return match_trailing_space(s, pos);
}

}  // namespace

std::optional<KnownPattern> recognize_pattern(std::string_view regex) {
  if (regex == kGpt2Regex) return KnownPattern::kGpt2;
  if (regex == kLlama3Regex) return KnownPattern::kLlama3;
  if (regex == kQwen2Regex) return KnownPattern::kQwen2;
  return std::nullopt;
}

std::string known_pattern_list() {
  return "the GPT-2 pattern " + std::string(kGpt2Regex) + ", the Llama 3 pattern " + std::string(kLlama3Regex) +
         " and the Qwen 2 pattern " + std::string(kQwen2Regex);
}

void find_pattern_matches(KnownPattern pattern, std::string_view text, std::vector<Match>& out) {
  out.clear();
  const Scanner scanner(text);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = 0;
    switch (pattern) {
      case KnownPattern::kGpt2: end = match_gpt2(scanner, pos); break;
      case KnownPattern::kLlama3: end = match_llama3(scanner, pos, 3); break;
      case KnownPattern::kQwen2: end = match_llama3(scanner, pos, 1); break;
    }
    out.push_back({pos, end, true});
    pos = end;
  }
}

}  // namespace graft::tokenizer_detail
