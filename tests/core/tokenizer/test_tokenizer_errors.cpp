// Bad input: each failure is a graft error whose message names the file and the key or token.
#include <gtest/gtest.h>

#include <functional>

#include "core/tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace graft::test {
namespace {

using nlohmann::json;

const std::string kByteLevel = "tokenizers/bytelevel_bpe/tokenizer.json";

// The byte-level fixture with one change applied, loaded under the name "edited.json".
std::string load_error(const std::function<void(json&)>& edit) {
  json tok = read_json(data_path(kByteLevel));
  edit(tok);
  return message_of<FormatError>([&] { Tokenizer::from_json_string(tok.dump(), "edited.json"); });
}

TEST(TokenizerErrors, MissingFile) {
  const std::string path = "/nonexistent/dir/tokenizer.json";
  const std::string message = message_of<InputError>([&] { Tokenizer::from_file(path); });
  EXPECT_EQ(message, "tokenizer.json (" + path + "): file not found");
  expect_contains(message_of<InputError>([] { Tokenizer::from_model_dir("/nonexistent/model"); }),
                  {"/nonexistent/model", "not found"});
  const TempDir empty;
  expect_contains(message_of<InputError>([&] { Tokenizer::from_model_dir(empty.path().string()); }),
                  {empty.path().string(), "has no tokenizer.json"});
}

TEST(TokenizerErrors, InvalidAndTruncatedJson) {
  expect_contains(message_of<FormatError>([] { Tokenizer::from_json_string("{not json", "broken.json"); }),
                  {"broken.json: not valid JSON"});
  expect_contains(message_of<FormatError>([] { Tokenizer::from_json_string("", "empty.json"); }),
                  {"empty.json: not valid JSON"});
  expect_contains(message_of<FormatError>([] { Tokenizer::from_json_string("[1, 2]", "list.json"); }),
                  {"list.json: must hold a JSON object, got an array"});
  // A file cut short on disk, at several places.
  const std::string full = read_text(data_path(kByteLevel));
  const TempDir dir;
  for (const std::size_t cut : {std::size_t{1}, full.size() / 3, full.size() / 2, full.size() - 2}) {
    const std::string path = dir.file("tokenizer.json", full.substr(0, cut));
    expect_contains(message_of<FormatError>([&] { Tokenizer::from_file(path); }),
                    {"tokenizer.json (" + path + "): not valid JSON"});
  }
}

TEST(TokenizerErrors, UnsupportedComponentsAreNamed) {
  EXPECT_EQ(load_error([](json& t) { t["model"]["type"] = "WordPiece"; }),
            "edited.json: model.type \"WordPiece\" is not supported (supported: BPE)");
  expect_contains(load_error([](json& t) {
                    t["pre_tokenizer"] = {{"type", "Whitespace"}};
                  }),
                  {"edited.json: pre_tokenizer.type \"Whitespace\" is not a supported pre-tokenizer (supported: "});
  expect_contains(load_error([](json& t) {
                    t["pre_tokenizer"] = json::parse(R"({"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false}]})");
                  }),
                  {"pre_tokenizer.pretokenizers[0].pattern.Regex \"\\\\w+\" is not a supported regex", "Llama 3"});
  expect_contains(load_error([](json& t) {
                    t["normalizer"] = {{"type", "Lowercase"}};
                  }),
                  {"normalizer.type \"Lowercase\" is not a supported normalizer"});
  expect_contains(load_error([](json& t) {
                    t["decoder"] = {{"type", "CTC"}};
                  }),
                  {"decoder.type \"CTC\" is not a supported decoder"});
  expect_contains(load_error([](json& t) {
                    t["post_processor"] = {{"type", "Magic"}};
                  }),
                  {"post_processor.type \"Magic\" is not a supported post-processor"});
  expect_contains(load_error([](json& t) { t["model"]["dropout"] = 0.1; }),
                  {"model.dropout is 0.1; BPE dropout makes encoding random"});
  expect_contains(load_error([](json& t) { t["version"] = "2.0"; }), {"version is \"2.0\""});
}

TEST(TokenizerErrors, BrokenModelsAreNamed) {
  expect_contains(load_error([](json& t) { t["model"]["merges"].push_back("zz qq"); }),
                  {"edited.json: model.merges[1141] names \"zz\", which is not in model.vocab"});
  expect_contains(load_error([](json& t) {
                    t["model"]["merges"].push_back(json::array({"a", "qq"}));
                  }),
                  {"model.merges[1141] names \"qq\""});
  expect_contains(load_error([](json& t) { t["model"]["merges"].push_back("a b c"); }),
                  {"model.merges[1141] must be two tokens separated by one space, got \"a b c\""});
  expect_contains(load_error([](json& t) { t["model"]["merges"].push_back(42); }),
                  {"model.merges[1141] must be a string \"a b\" or a pair"});
  expect_contains(load_error([](json& t) { t["model"]["vocab"]["a"] = "one"; }),
                  {"model.vocab.a must be a token id (a non-negative integer), got a string"});
  expect_contains(load_error([](json& t) { t["model"]["vocab"]["a"] = -3; }), {"model.vocab.a must be a token id"});
  expect_contains(load_error([](json& t) { t["model"]["vocab"]["zzz"] = 5; }), {"model.vocab gives the id 5 to both"});
  expect_contains(load_error([](json& t) { t["model"]["vocab"]["zzz"] = 2000000000; }),
                  {"model.vocab gives \"zzz\" the id 2000000000, far beyond"});
  expect_contains(load_error([](json& t) { t.erase("model"); }), {"edited.json: model is missing"});
  expect_contains(load_error([](json& t) { t["model"].erase("merges"); }), {"model.merges is missing"});
  expect_contains(load_error([](json& t) { t["added_tokens"][0].erase("content"); }),
                  {"added_tokens[0].content is missing"});
  expect_contains(load_error([](json& t) { t["added_tokens"][1]["special"] = 1; }),
                  {"added_tokens[1].special must be true or false, got an integer"});
}

TEST(TokenizerErrors, DeepNestingIsRefused) {
  json nested = {{"type", "ByteLevel"}};
  for (int i = 0; i < 100; ++i) nested = {{"type", "Sequence"}, {"pretokenizers", json::array({nested})}};
  expect_contains(load_error([&](json& t) { t["pre_tokenizer"] = nested; }), {"too deeply"});
}

TEST(TokenizerErrors, IdsOutOfRange) {
  const Tokenizer tok = Tokenizer::from_file(data_path(kByteLevel));
  expect_contains(message_of<InputError>([&] {
                    tok.decode({42, 1400});
                  }),
                  {"decode: id 1400 is not a token of tokenizer.json (", "(vocabulary size 1400)"});
  expect_contains(message_of<InputError>([&] { tok.decode({-1}); }), {"decode: id -1"});
  expect_contains(message_of<InputError>([&] { tok.id_to_token(1400); }), {"id_to_token: id 1400"});
  expect_contains(message_of<InputError>([&] { tok.id_to_token(-5); }), {"id_to_token: id -5"});
}

TEST(TokenizerErrors, TextMustBeUtf8) {
  const Tokenizer tok = Tokenizer::from_file(data_path(kByteLevel));
  expect_contains(message_of<InputError>([&] { tok.encode(std::string("ab\xC3", 3)); }),
                  {"encode: the text is not valid UTF-8 (at byte 2)"});
  expect_contains(message_of<InputError>([&] { tok.encode("\xED\xA0\x80"); }), {"not valid UTF-8 (at byte 0)"});
}

TEST(TokenizerErrors, MissingUnkTokenFailsWhenNeeded) {
  // Like HF, the file loads; encoding a character that needs the unk token fails.
  json tok = read_json(data_path("tokenizers/metaspace_bpe/tokenizer.json"));
  tok["model"]["byte_fallback"] = false;
  tok["model"]["unk_token"] = "<missing>";
  const Tokenizer t = Tokenizer::from_json_string(tok.dump(), "unk.json");
  EXPECT_FALSE(t.encode("the").empty());
  expect_contains(message_of<FormatError>([&] { t.encode("the \u2603"); }),
                  {"unk.json: model.unk_token \"<missing>\" is not in model.vocab"});
}

}  // namespace
}  // namespace graft::test
