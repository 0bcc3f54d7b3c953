#include "core/tokenizer/pre_tokenizers.h"

#include <optional>

#include "core/tokenizer/split_patterns.h"
#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {
namespace {

constexpr int kMaxNesting = 16;

// Applies `split_one` to every non-token piece, keeping token pieces where they are.
template <typename SplitOne>
void split_each(std::vector<Piece>& pieces, SplitOne split_one) {
  std::vector<Piece> out;
  out.reserve(pieces.size());
  for (Piece& piece : pieces) {
    if (piece.is_token()) {
      out.push_back(std::move(piece));
    } else {
      split_one(piece, out);
    }
  }
  pieces = std::move(out);
}

// HF NormalizedString::prepend, which aligns the new text with the first character.
void prepend_to(Piece& piece, std::string_view prefix) {
  if (piece.text.empty()) return;
  if (piece.origin_len > 0) piece.origin_len += prefix.size();
  piece.text.insert(0, prefix);
}

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Match> matches;
    split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      // HF prepends the space to every piece, also to those that follow an added token.
      if (add_prefix_space_ && !piece.text.empty() && piece.text.front() != ' ') prepend_to(piece, " ");
      const std::size_t first = out.size();
      if (use_regex_) {
        find_pattern_matches(KnownPattern::kGpt2, piece.text, matches);
        split_piece(piece, matches, SplitBehavior::kIsolated, out);
      } else {
        out.push_back(std::move(piece));
      }
      for (std::size_t i = first; i < out.size(); ++i) map_bytes(out[i]);
    });
  }

 private:
  static void map_bytes(Piece& piece) {
    const auto& table = byte_to_unicode();
    std::string mapped;
    mapped.reserve(piece.text.size() * 2);
    std::size_t origin_len = 0;
    for (std::size_t i = 0; i < piece.text.size(); ++i) {
      const std::string& c = table[static_cast<unsigned char>(piece.text[i])];
      mapped += c;
      if (i < piece.origin_len) origin_len += c.size();
    }
    piece.text = std::move(mapped);
    piece.origin_len = origin_len;
  }

  bool add_prefix_space_;
  bool use_regex_;
};

enum class PrependScheme { kFirst, kAlways, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Match> matches;
    split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      replace_spaces(piece);
      const bool starts_with_replacement = piece.text.compare(0, replacement_.size(), replacement_) == 0;
      // "first" prepends only at the very beginning of the input, not after an added token.
      const bool prepend = !starts_with_replacement &&
                           (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && piece.at_origin));
      if (prepend) prepend_to(piece, replacement_);
      if (split_) {
        find_char_matches(piece.text, replacement_, matches);
        split_piece(piece, matches, SplitBehavior::kMergedWithNext, out);
      } else {
        out.push_back(std::move(piece));
      }
    });
  }

 private:
  // ' ' -> replacement; each replacement is aligned with the space it replaces.
  void replace_spaces(Piece& piece) const {
    if (piece.text.find(' ') == std::string::npos) return;
    std::string out;
    out.reserve(piece.text.size() + 8);
    std::size_t origin_len = 0;
    for (std::size_t i = 0; i < piece.text.size(); ++i) {
      const bool space = piece.text[i] == ' ';
      if (space) {
        out += replacement_;
      } else {
        out += piece.text[i];
      }
      if (i < piece.origin_len) origin_len += space ? replacement_.size() : 1;
    }
    piece.text = std::move(out);
    piece.origin_len = origin_len;
  }

  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::optional<KnownPattern> pattern, std::string literal, SplitBehavior behavior, bool invert)
      : pattern_(pattern), literal_(std::move(literal)), behavior_(behavior), invert_(invert) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Match> matches;
    split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      if (pattern_) {
        find_pattern_matches(*pattern_, piece.text, matches);
      } else {
        find_literal_matches(piece.text, literal_, matches);
      }
      if (invert_) {
        for (Match& m : matches) m.is_match = !m.is_match;
      }
      split_piece(piece, matches, behavior_, out);
    });
  }

 private:
  std::optional<KnownPattern> pattern_;
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

// HF Digits: every \p{N} character is a delimiter; runs of them stay together unless
// individual_digits.
class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Match> matches;
    split_each(pieces, [&](Piece& piece, std::vector<Piece>& out) {
      matches.clear();
      const std::string& text = piece.text;
      std::size_t previous = 0;
      for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t len = utf8_sequence_length(static_cast<unsigned char>(text[pos]));
        if (is_number(decode_utf8_at(text, pos))) {
          if (pos > previous) matches.push_back({previous, pos, false});
          matches.push_back({pos, pos + len, true});
          previous = pos + len;
        }
        pos += len;
      }
      if (previous < text.size()) matches.push_back({previous, text.size(), false});
      split_piece(piece, matches, individual_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, out);
    });
  }

 private:
  bool individual_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& step : steps_) step->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

SplitBehavior parse_behavior(const json& config, const JsonWhere& where) {
  const std::string name = require_string(config, "behavior", where);
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  where["behavior"].fail(
      quote(name) + " is not a split behavior (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

std::unique_ptr<PreTokenizer> parse_split(const json& config, const JsonWhere& where) {
  const json& pattern = require_object(config, "pattern", where);
  const SplitBehavior behavior = parse_behavior(config, where);
  const bool invert = optional_bool(config, "invert", false, where);
  if (const json* literal = find_member(pattern, "String")) {
    std::string text = expect_string(*literal, where["pattern"]["String"]);
    if (text.empty()) where["pattern"]["String"].fail("is empty");
    return std::make_unique<SplitPreTokenizer>(std::nullopt, std::move(text), behavior, invert);
  }
  if (const json* regex = find_member(pattern, "Regex")) {
    const std::string text = expect_string(*regex, where["pattern"]["Regex"]);
    const auto known = recognize_pattern(text);
    if (!known) {
      where["pattern"]["Regex"].fail(quote(text) + " is not a supported regex (supported: " + known_pattern_list() +
                                     ")");
    }
    return std::make_unique<SplitPreTokenizer>(known, "", behavior, invert);
  }
  where["pattern"].fail("must be {\"String\": ...} or {\"Regex\": ...}");
}

std::string parse_replacement(const json& config, const JsonWhere& where) {
  std::string replacement = require_string(config, "replacement", where);
  if (replacement.empty() || utf8_sequence_length(static_cast<unsigned char>(replacement[0])) != replacement.size()) {
    where["replacement"].fail("must be a single character, got " + quote(replacement));
  }
  return replacement;
}

std::unique_ptr<PreTokenizer> parse_metaspace(const json& config, const JsonWhere& where) {
  std::string replacement = parse_replacement(config, where);
  PrependScheme scheme = PrependScheme::kAlways;  // HF's default when the key is absent
  if (const auto name = optional_string(config, "prepend_scheme", where)) {
    if (*name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (*name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      where["prepend_scheme"].fail(quote(*name) + " is not one of \"first\", \"always\", \"never\"");
    }
  }
  // Older files say add_prefix_space instead; HF rejects a false one that contradicts the scheme.
  const json* legacy = find_member(config, "add_prefix_space");
  if (legacy != nullptr && legacy->is_boolean() && !legacy->get<bool>()) {
    if (scheme != PrependScheme::kNever) where["add_prefix_space"].fail("is false but prepend_scheme is not \"never\"");
  }
  const bool split = optional_bool(config, "split", true, where);
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme, split);
}

}  // namespace

const std::vector<std::string>& byte_to_unicode() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next_free = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      // Printable Latin-1 stands for itself; everything else is moved to U+0100 onwards in order.
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      append_utf8(t[b], printable ? b : next_free++);
    }
    return t;
  }();
  return table;
}

std::unique_ptr<PreTokenizer> parse_pre_tokenizer(const json& config, const JsonWhere& where, int depth) {
  if (config.is_null()) return nullptr;
  if (!config.is_object()) where.fail("must be an object or null, got " + describe_json_type(config));
  if (depth > kMaxNesting) where.fail("nests Sequence pre-tokenizers too deeply");
  const std::string type = require_string(config, "type", where);
  if (type == "ByteLevel") {
    return std::make_unique<ByteLevelPreTokenizer>(optional_bool(config, "add_prefix_space", true, where),
                                                   optional_bool(config, "use_regex", true, where));
  }
  if (type == "Metaspace") return parse_metaspace(config, where);
  if (type == "Split") return parse_split(config, where);
  if (type == "Digits")
    return std::make_unique<DigitsPreTokenizer>(optional_bool(config, "individual_digits", false, where));
  if (type == "Sequence") {
    const json& list = require_array(config, "pretokenizers", where);
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = parse_pre_tokenizer(list[i], where["pretokenizers"].at(i), depth + 1);
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  where["type"].fail(quote(type) +
                     " is not a supported pre-tokenizer (supported: ByteLevel, Metaspace, Split, Digits, Sequence)");
}

}  // namespace graft::tokenizer_detail
