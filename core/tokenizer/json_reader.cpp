#include "core/tokenizer/json_reader.h"

#include <cstdio>
#include <limits>

#include "core/error.h"

namespace graft::tokenizer_detail {

JsonWhere::JsonWhere(std::string source, std::string path) : source_(std::move(source)), path_(std::move(path)) {}

JsonWhere JsonWhere::operator[](const std::string& key) const {
  return JsonWhere(source_, path_.empty() ? key : path_ + "." + key);
}

JsonWhere JsonWhere::at(std::size_t index) const {
  return JsonWhere(source_, path_ + "[" + std::to_string(index) + "]");
}

void JsonWhere::fail(const std::string& what) const {
  throw FormatError(source_ + ": " + (path_.empty() ? what : path_ + " " + what));
}

std::string describe_json_type(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "a binary value";
  }
}

std::string quote(const std::string& text) {
  constexpr std::size_t kMaxShown = 80;
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out + "\"";
}

json parse_json_text(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw FormatError(source + ": not valid JSON (" + e.what() + ")");
  }
}

const json* find_member(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const json& require_member(const json& object, const char* key, const JsonWhere& where) {
  const json* value = find_member(object, key);
  if (value == nullptr || value->is_null()) where[key].fail("is missing");
  return *value;
}

const json& require_object(const json& object, const char* key, const JsonWhere& where) {
  const json& value = require_member(object, key, where);
  if (!value.is_object()) where[key].fail("must be an object, got " + describe_json_type(value));
  return value;
}

const json& require_array(const json& object, const char* key, const JsonWhere& where) {
  const json& value = require_member(object, key, where);
  if (!value.is_array()) where[key].fail("must be an array, got " + describe_json_type(value));
  return value;
}

std::string require_string(const json& object, const char* key, const JsonWhere& where) {
  return expect_string(require_member(object, key, where), where[key]);
}

std::optional<std::string> optional_string(const json& object, const char* key, const JsonWhere& where) {
  const json* value = find_member(object, key);
  if (value == nullptr || value->is_null()) return std::nullopt;
  return expect_string(*value, where[key]);
}

bool optional_bool(const json& object, const char* key, bool fallback, const JsonWhere& where) {
  const json* value = find_member(object, key);
  if (value == nullptr || value->is_null()) return fallback;
  if (!value->is_boolean()) where[key].fail("must be true or false, got " + describe_json_type(*value));
  return value->get<bool>();
}

std::optional<int64_t> optional_int(const json& object, const char* key, const JsonWhere& where) {
  const json* value = find_member(object, key);
  if (value == nullptr || value->is_null()) return std::nullopt;
  return expect_token_id(*value, where[key]);
}

std::string expect_string(const json& value, const JsonWhere& where) {
  if (!value.is_string()) where.fail("must be a string, got " + describe_json_type(value));
  return value.get<std::string>();
}

int64_t expect_token_id(const json& value, const JsonWhere& where) {
  // Token ids are u32 in HF tokenizers; we keep them below 2^31 so that they fit everywhere.
  constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (v <= static_cast<uint64_t>(kMaxId)) return static_cast<int64_t>(v);
  } else if (value.is_number_integer()) {
    const auto v = value.get<int64_t>();
    if (v >= 0 && v <= kMaxId) return v;
  } else {
    where.fail("must be a token id (a non-negative integer), got " + describe_json_type(value));
  }
  where.fail("must be a token id between 0 and " + std::to_string(kMaxId) + ", got " + value.dump());
}

}  // namespace graft::tokenizer_detail
