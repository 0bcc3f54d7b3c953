#include "core/tokenizer/post_processors.h"

namespace graft::tokenizer_detail {
namespace {

constexpr int kMaxNesting = 16;

// The ids of a special token of a TemplateProcessing ("special_tokens": {name: {"ids": [...]}}).
std::vector<int64_t> template_token_ids(const json& special_tokens, const std::string& name, const JsonWhere& where) {
  const json* entry = find_member(special_tokens, name.c_str());
  if (entry == nullptr) where.fail("uses " + quote(name) + ", which special_tokens does not define");
  const JsonWhere entry_where = where["special_tokens"][name];
  const json& ids = require_array(*entry, "ids", entry_where);
  std::vector<int64_t> out;
  for (std::size_t i = 0; i < ids.size(); ++i) out.push_back(expect_token_id(ids[i], entry_where["ids"].at(i)));
  return out;
}

// One element of a template: {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<s>"}}, or the
// string form "$A" / "<s>" (optionally with ":type_id"). Returns nullopt for the sequence itself.
std::optional<std::string> template_special_token(const json& piece, const JsonWhere& where) {
  if (piece.is_string()) {
    std::string text = piece.get<std::string>();
    if (const std::size_t colon = text.rfind(':'); colon != std::string::npos && colon > 0) text.resize(colon);
    if (!text.empty() && text[0] == '$') return std::nullopt;
    return text;
  }
  if (const json* sequence = find_member(piece, "Sequence")) {
    const std::string id = require_string(*sequence, "id", where["Sequence"]);
    if (id != "A") where["Sequence"]["id"].fail("is " + quote(id) + "; a single-sequence template can only use A");
    return std::nullopt;
  }
  if (const json* special = find_member(piece, "SpecialToken"))
    return require_string(*special, "id", where["SpecialToken"]);
  where.fail("must be {\"Sequence\": ...} or {\"SpecialToken\": ...}, got " + describe_json_type(piece));
}

SpecialTokenFrame parse_template(const json& config, const JsonWhere& where) {
  const json& single = require_array(config, "single", where);
  const json* special_tokens = find_member(config, "special_tokens");
  static const json kNoTokens = json::object();
  if (special_tokens == nullptr || special_tokens->is_null()) special_tokens = &kNoTokens;
  SpecialTokenFrame frame;
  bool seen_sequence = false;
  for (std::size_t i = 0; i < single.size(); ++i) {
    const JsonWhere piece_where = where["single"].at(i);
    const auto name = template_special_token(single[i], piece_where);
    if (!name) {
      if (seen_sequence) piece_where.fail("repeats the sequence");
      seen_sequence = true;
      continue;
    }
    const auto ids = template_token_ids(*special_tokens, *name, where);
    auto& side = seen_sequence ? frame.suffix : frame.prefix;
    side.insert(side.end(), ids.begin(), ids.end());
  }
  if (!seen_sequence) where["single"].fail("does not contain the sequence ($A)");
  return frame;
}

// RobertaProcessing / BertProcessing: {"cls": ["<s>", 0], "sep": ["</s>", 2]} -> cls A sep.
int64_t processor_token_id(const json& config, const char* key, const JsonWhere& where) {
  const json& pair = require_array(config, key, where);
  if (pair.size() != 2) where[key].fail("must be [token, id]");
  return expect_token_id(pair[1], where[key].at(1));
}

}  // namespace

SpecialTokenFrame parse_post_processor(const json& config, const JsonWhere& where, int depth) {
  if (config.is_null()) return {};
  if (!config.is_object()) where.fail("must be an object or null, got " + describe_json_type(config));
  if (depth > kMaxNesting) where.fail("nests Sequence post-processors too deeply");
  const std::string type = require_string(config, "type", where);
  if (type == "TemplateProcessing") return parse_template(config, where);
  if (type == "ByteLevel") return {};  // only trims offsets, which graft does not report
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    return SpecialTokenFrame{{processor_token_id(config, "cls", where)}, {processor_token_id(config, "sep", where)}};
  }
  if (type == "Sequence") {
    const json& list = require_array(config, "processors", where);
    SpecialTokenFrame frame;
    for (std::size_t i = 0; i < list.size(); ++i) {
      // Each processor wraps what the previous ones produced.
      const SpecialTokenFrame inner = parse_post_processor(list[i], where["processors"].at(i), depth + 1);
      frame.prefix.insert(frame.prefix.begin(), inner.prefix.begin(), inner.prefix.end());
      frame.suffix.insert(frame.suffix.end(), inner.suffix.begin(), inner.suffix.end());
    }
    return frame;
  }
  where["type"].fail(quote(type) +
                     " is not a supported post-processor (supported: TemplateProcessing, RobertaProcessing, "
                     "BertProcessing, ByteLevel, Sequence)");
}

}  // namespace graft::tokenizer_detail
