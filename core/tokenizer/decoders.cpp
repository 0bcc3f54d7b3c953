#include "core/tokenizer/decoders.h"

#include "core/tokenizer/pre_tokenizers.h"
#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {
namespace {

constexpr int kMaxNesting = 16;
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Splits a valid UTF-8 string into its characters.
std::vector<std::string_view> characters(std::string_view text) {
  std::vector<std::string_view> out;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t len = utf8_sequence_length(static_cast<unsigned char>(text[pos]));
    out.push_back(text.substr(pos, len));
    pos += len;
  }
  return out;
}

// Undoes the ByteLevel byte-to-character map over all tokens at once, then decodes the bytes
// lossily (a token may hold half of a character). A token with a character outside the map (an
// added token such as "<|im_start|>" with non-ASCII text) contributes its own UTF-8 bytes.
class ByteLevelDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    // The map's characters are all below U+0144; -1 marks a code point outside it.
    static const std::vector<int> reverse = [] {
      std::vector<int> map(0x144, -1);
      const auto& forward = byte_to_unicode();
      for (int b = 0; b < 256; ++b) map[decode_utf8_at(forward[b], 0)] = b;
      return map;
    }();
    std::string bytes;
    std::string token_bytes;
    for (const std::string& token : tokens) {
      token_bytes.clear();
      bool all_mapped = true;
      for (std::size_t pos = 0; pos < token.size() && all_mapped;) {
        const uint32_t cp = decode_utf8_at(token, pos);
        all_mapped = cp < reverse.size() && reverse[cp] >= 0;
        if (all_mapped) token_bytes.push_back(static_cast<char>(reverse[cp]));
        pos += utf8_sequence_length(static_cast<unsigned char>(token[pos]));
      }
      bytes += all_mapped ? token_bytes : token;
    }
    return {utf8_lossy(bytes)};
  }
};

// The "▁" becomes a space, except in the first token where it is dropped (unless the scheme is
// "never"), undoing the prefix the pre-tokenizer added.
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}

  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      for (std::string_view c : characters(tokens[i])) {
        if (c == replacement_) {
          if (!(i == 0 && strip_first_)) out += ' ';
        } else {
          out += c;
        }
      }
      tokens[i] = std::move(out);
    }
    return tokens;
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

// HF's test for a byte token: exactly "<0x" + two characters Rust's u8::from_str_radix(_, 16)
// accepts (hex digits, or a '+' sign and one digit) + ">".
int parse_byte_token(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const char a = token[3];
  const char b = token[4];
  if (a == '+') return hex(b);
  if (hex(a) < 0 || hex(b) < 0) return -1;
  return hex(a) * 16 + hex(b);
}

// Runs of <0xNN> tokens become the text they encode, or one U+FFFD per byte if it is not UTF-8.
class ByteFallbackDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    const auto flush = [&]() {
      if (pending.empty()) return;
      if (find_invalid_utf8(pending) == std::string::npos) {
        out.push_back(pending);
      } else {
        for (std::size_t i = 0; i < pending.size(); ++i) out.emplace_back(kReplacementCharacter);
      }
      pending.clear();
    };
    for (std::string& token : tokens) {
      const int byte = parse_byte_token(token);
      if (byte >= 0) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    return out;
  }
};

class FuseDecoder : public Decoder {
 public:
  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    std::string joined;
    for (const std::string& t : tokens) joined += t;
    return {joined};
  }
};

// Replace with a literal pattern, inside each token.
class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}

  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      std::string out;
      std::size_t previous = 0;
      for (std::size_t pos = token.find(pattern_); pos != std::string::npos; pos = token.find(pattern_, previous)) {
        out.append(token, previous, pos - previous);
        out += content_;
        previous = pos + pattern_.size();
      }
      out.append(token, previous, std::string::npos);
      token = std::move(out);
    }
    return tokens;
  }

 private:
  std::string pattern_;
  std::string content_;
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, std::size_t start, std::size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}

  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (std::string& token : tokens) {
      const auto chars = characters(token);
      std::size_t begin = 0;
      while (begin < start_ && begin < chars.size() && chars[begin] == content_) ++begin;
      std::size_t end = chars.size();
      for (std::size_t n = 0; n < stop_ && end > begin && chars[end - 1] == content_; ++n) --end;
      std::string out;
      for (std::size_t i = begin; i < end; ++i) out += chars[i];
      token = std::move(out);
    }
    return tokens;
  }

 private:
  std::string content_;
  std::size_t start_;
  std::size_t stop_;
};

// BPEDecoder: the end-of-word suffix becomes a space, or nothing in the last token.
class SuffixDecoder : public Decoder {
 public:
  explicit SuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}

  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    if (suffix_.empty()) return tokens;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      const std::string replacement = i + 1 == tokens.size() ? "" : " ";
      std::string& token = tokens[i];
      std::string out;
      std::size_t previous = 0;
      for (std::size_t pos = token.find(suffix_); pos != std::string::npos; pos = token.find(suffix_, previous)) {
        out.append(token, previous, pos - previous);
        out += replacement;
        previous = pos + suffix_.size();
      }
      out.append(token, previous, std::string::npos);
      token = std::move(out);
    }
    return tokens;
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}

  std::vector<std::string> decode_chain(std::vector<std::string> tokens) const override {
    for (const auto& step : steps_) tokens = step->decode_chain(std::move(tokens));
    return tokens;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

std::string single_character(const json& config, const char* key, const JsonWhere& where) {
  std::string text = require_string(config, key, where);
  if (text.empty() || utf8_sequence_length(static_cast<unsigned char>(text[0])) != text.size()) {
    where[key].fail("must be a single character, got " + quote(text));
  }
  return text;
}

std::unique_ptr<Decoder> parse_metaspace_decoder(const json& config, const JsonWhere& where) {
  std::string replacement = single_character(config, "replacement", where);
  bool strip_first = true;  // prepend_scheme "always" (HF's default) or "first"
  if (const auto scheme = optional_string(config, "prepend_scheme", where)) {
    if (*scheme == "never") {
      strip_first = false;
    } else if (*scheme != "first" && *scheme != "always") {
      where["prepend_scheme"].fail(quote(*scheme) + " is not one of \"first\", \"always\", \"never\"");
    }
  }
  const json* legacy = find_member(config, "add_prefix_space");
  if (legacy != nullptr && legacy->is_boolean() && !legacy->get<bool>()) {
    if (strip_first) where["add_prefix_space"].fail("is false but prepend_scheme is not \"never\"");
  }
  return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
}

std::string literal_pattern(const json& config, const JsonWhere& where) {
  const json& pattern = require_object(config, "pattern", where);
  if (const json* literal = find_member(pattern, "String")) {
    std::string text = expect_string(*literal, where["pattern"]["String"]);
    if (text.empty()) where["pattern"]["String"].fail("is empty");
    return text;
  }
  where["pattern"].fail("must be {\"String\": ...} (regex patterns are not supported)");
}

std::size_t count(const json& config, const char* key, const JsonWhere& where) {
  const auto value = optional_int(config, key, where);
  return value ? static_cast<std::size_t>(*value) : 0;
}

}  // namespace

std::unique_ptr<Decoder> parse_decoder(const json& config, const JsonWhere& where, int depth) {
  if (config.is_null()) return nullptr;
  if (!config.is_object()) where.fail("must be an object or null, got " + describe_json_type(config));
  if (depth > kMaxNesting) where.fail("nests Sequence decoders too deeply");
  const std::string type = require_string(config, "type", where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") return parse_metaspace_decoder(config, where);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    return std::make_unique<ReplaceDecoder>(literal_pattern(config, where), require_string(config, "content", where));
  }
  if (type == "Strip") {
    return std::make_unique<StripDecoder>(single_character(config, "content", where), count(config, "start", where),
                                          count(config, "stop", where));
  }
  if (type == "BPEDecoder")
    return std::make_unique<SuffixDecoder>(optional_string(config, "suffix", where).value_or("</w>"));
  if (type == "Sequence") {
    const json& list = require_array(config, "decoders", where);
    std::vector<std::unique_ptr<Decoder>> steps;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto step = parse_decoder(list[i], where["decoders"].at(i), depth + 1);
      if (step) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  where["type"].fail(
      quote(type) +
      " is not a supported decoder (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Replace, Strip, "
      "BPEDecoder, Sequence)");
}

}  // namespace graft::tokenizer_detail
