// Reading tokenizer.json / tokenizer_config.json values with errors that name the file and the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace graft::tokenizer_detail {

using nlohmann::json;

// Where a value sits: the file ("tokenizer.json (/models/x/tokenizer.json)") and the key path
// inside it ("model.merges[3]"). Every loader error goes through fail(), so messages look alike:
//   tokenizer.json (/models/x/tokenizer.json): model.merges[3] names "xy", which is not in model.vocab
class JsonWhere {
 public:
  explicit JsonWhere(std::string source, std::string path = "");

  JsonWhere operator[](const std::string& key) const;
  JsonWhere at(std::size_t index) const;

  const std::string& source() const { return source_; }
  const std::string& path() const { return path_; }

  // Throws graft::FormatError("<source>: <path> <what>").
  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::string source_;
  std::string path_;
};

// "a string", "null", "an array"... for messages such as `must be a string, got an array`.
std::string describe_json_type(const json& value);

// Quotes a token or key for a message, escaping control characters and cutting very long ones.
std::string quote(const std::string& text);

// Parses `text`, turning nlohmann's exceptions into a FormatError naming `source`.
json parse_json_text(const std::string& text, const std::string& source);

// nullptr when `object` is not an object or has no `key`.
const json* find_member(const json& object, const char* key);

// The member `key` of `object`, which must be present (and not null) and of the named type.
const json& require_member(const json& object, const char* key, const JsonWhere& where);
const json& require_object(const json& object, const char* key, const JsonWhere& where);
const json& require_array(const json& object, const char* key, const JsonWhere& where);
std::string require_string(const json& object, const char* key, const JsonWhere& where);

// Absent or null gives the fallback; any other type than the expected one is an error.
std::optional<std::string> optional_string(const json& object, const char* key, const JsonWhere& where);
bool optional_bool(const json& object, const char* key, bool fallback, const JsonWhere& where);
std::optional<int64_t> optional_int(const json& object, const char* key, const JsonWhere& where);

// `value` itself must be a string / a non-negative integer that fits a token id.
std::string expect_string(const json& value, const JsonWhere& where);
int64_t expect_token_id(const json& value, const JsonWhere& where);

}  // namespace graft::tokenizer_detail
