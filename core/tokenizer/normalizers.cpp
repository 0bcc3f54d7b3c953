#include "core/tokenizer/normalizers.h"

#include <vector>

#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {
namespace {

constexpr int kMaxNesting = 16;

enum class NormalForm { kNfc, kNfd };

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}

  void normalize(Piece& piece) const override {
    std::vector<uint32_t> cps;
    std::vector<std::size_t> byte_of;  // byte offset of each input code point
    for (std::size_t pos = 0; pos < piece.text.size();) {
      byte_of.push_back(pos);
      cps.push_back(decode_utf8_at(piece.text, pos));
      pos += utf8_sequence_length(static_cast<unsigned char>(piece.text[pos]));
    }
    const auto normalized = form_ == NormalForm::kNfc ? normalize_nfc(cps) : normalize_nfd(cps);
    PieceBuilder builder(piece);
    std::string utf8;
    for (const AlignedCodePoint& c : normalized) {
      utf8.clear();
      append_utf8(utf8, c.cp);
      builder.append(utf8, byte_of[c.source]);
    }
    piece = builder.finish();
  }

 private:
  NormalForm form_;
};

// HF Prepend: adds the string in front of a non-empty piece; HF aligns it with the first character.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}

  void normalize(Piece& piece) const override {
    if (piece.text.empty()) return;
    if (piece.origin_len > 0) piece.origin_len += prefix_.size();
    piece.text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

// HF Replace with a literal pattern. HF aligns the replacement with the last byte of the match.
class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  void normalize(Piece& piece) const override {
    std::vector<Match> matches;
    find_literal_matches(piece.text, pattern_, matches);
    PieceBuilder builder(piece);
    for (const Match& m : matches) {
      if (m.is_match) {
        builder.append(content_, m.end - 1);
      } else {
        append_unchanged(builder, piece.text, m.begin, m.end);
      }
    }
    piece = builder.finish();
  }

 private:
  static void append_unchanged(PieceBuilder& builder, const std::string& text, std::size_t begin, std::size_t end) {
    for (std::size_t pos = begin; pos < end;) {
      const std::size_t len = utf8_sequence_length(static_cast<unsigned char>(text[pos]));
      builder.append(std::string_view(text).substr(pos, len), pos);
      pos += len;
    }
  }

  std::string pattern_;
  std::string content_;
};

// HF Strip: removes White_Space characters at either end.
class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}

  void normalize(Piece& piece) const override {
    const std::string& text = piece.text;
    std::size_t begin = 0;
    std::size_t end = text.size();
    if (left_) {
      while (begin < end && is_whitespace(decode_utf8_at(text, begin))) {
        begin += utf8_sequence_length(static_cast<unsigned char>(text[begin]));
      }
    }
    if (right_) {
      while (end > begin) {
        std::size_t last = end - 1;
        while (last > begin && (static_cast<unsigned char>(text[last]) & 0xC0) == 0x80) --last;
        if (!is_whitespace(decode_utf8_at(text, last))) break;
        end = last;
      }
    }
    // A transformation, not a slice: the remaining characters keep their own alignments.
    PieceBuilder builder(piece);
    for (std::size_t pos = begin; pos < end;) {
      const std::size_t len = utf8_sequence_length(static_cast<unsigned char>(text[pos]));
      builder.append(std::string_view(text).substr(pos, len), pos);
      pos += len;
    }
    piece = builder.finish();
  }

 private:
  bool left_;
  bool right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}

  void normalize(Piece& piece) const override {
    for (const auto& step : steps_) step->normalize(piece);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// The literal of a Replace pattern {"String": "..."}; a {"Regex": ...} pattern is not supported.
std::string literal_pattern(const json& config, const JsonWhere& where) {
  const json& pattern = require_object(config, "pattern", where);
  if (const json* literal = find_member(pattern, "String")) {
    std::string text = expect_string(*literal, where["pattern"]["String"]);
    if (text.empty()) where["pattern"]["String"].fail("is empty");
    return text;
  }
  if (const json* regex = find_member(pattern, "Regex")) {
    where["pattern"]["Regex"].fail(
        "is not supported (only {\"String\": ...} patterns are), got " +
        (regex->is_string() ? quote(regex->get<std::string>()) : describe_json_type(*regex)));
  }
  where["pattern"].fail("must be {\"String\": ...}");
}

}  // namespace

std::unique_ptr<Normalizer> parse_normalizer(const json& config, const JsonWhere& where, int depth) {
  if (config.is_null()) return nullptr;
  if (!config.is_object()) where.fail("must be an object or null, got " + describe_json_type(config));
  if (depth > kMaxNesting) where.fail("nests Sequence normalizers too deeply");
  const std::string type = require_string(config, "type", where);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfc);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(NormalForm::kNfd);
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(require_string(config, "prepend", where));
  if (type == "Replace") {
    return std::make_unique<ReplaceNormalizer>(literal_pattern(config, where),
                                               require_string(config, "content", where));
  }
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(optional_bool(config, "strip_left", true, where),
                                             optional_bool(config, "strip_right", true, where));
  }
  if (type == "Sequence") {
    const json& list = require_array(config, "normalizers", where);
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = parse_normalizer(list[i], where["normalizers"].at(i), depth + 1);
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  where["type"].fail(quote(type) +
                     " is not a supported normalizer (supported: NFC, NFD, Prepend, Replace, Strip, Sequence)");
}

}  // namespace graft::tokenizer_detail
