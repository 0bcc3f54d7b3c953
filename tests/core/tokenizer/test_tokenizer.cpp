// The tokenizer against HF's recorded outputs: the fixture encodings, the facts models'
// tokenizers, and BOS/EOS handling from tokenizer_config.json / config.json / post-processors.
#include <gtest/gtest.h>

#include <thread>

#include "core/tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace graft::test {
namespace {

using nlohmann::json;
using Ids = std::vector<int64_t>;

const std::string kMetaspace = "tokenizers/metaspace_bpe/tokenizer.json";
const std::string kByteLevel = "tokenizers/bytelevel_bpe/tokenizer.json";

// encodings.json holds HF's ids and HF's decode with its default skip_special_tokens=True.
void expect_fixture_encodings(const std::string& name) {
  const Tokenizer tok = Tokenizer::from_file(data_path("tokenizers/" + name + "/tokenizer.json"));
  const json cases = read_json(data_path("tokenizers/" + name + "/encodings.json"));
  ASSERT_GE(cases.size(), 10u);
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const Ids ids = c["ids"].get<Ids>();
    EXPECT_EQ(tok.encode(text), ids) << name << ": " << text;
    EXPECT_EQ(tok.decode(ids, /*skip_special_tokens=*/true), c["decoded"].get<std::string>()) << name << ": " << text;
  }
}

TEST(TokenizerFixtures, MetaspaceEncodingsMatchHf) { expect_fixture_encodings("metaspace_bpe"); }

TEST(TokenizerFixtures, ByteLevelEncodingsMatchHf) { expect_fixture_encodings("bytelevel_bpe"); }

TEST(TokenizerFixtures, DecodeKeepsSpecialTokensUnlessAskedToSkip) {
  const Tokenizer meta = Tokenizer::from_file(data_path(kMetaspace));
  // HF: decode([2, 94]) == "<bos> is"; the Metaspace decoder drops the first token's "▁" only.
  EXPECT_EQ(meta.decode({2, 94}), "<bos> is");
  EXPECT_EQ(meta.decode({2, 94}, true), "is");
  const Tokenizer byte = Tokenizer::from_file(data_path(kByteLevel));
  EXPECT_EQ(byte.decode({2, 42, 1}), "<|bos|>H<|eos|>");
  EXPECT_EQ(byte.decode({2, 42, 1}, true), "H");
}

TEST(TokenizerFixtures, MetaspaceFirstPrependsOnlyAtTheStartOfTheInput) {
  const Tokenizer meta = Tokenizer::from_file(data_path(kMetaspace));
  EXPECT_EQ(meta.encode("<bos>is"), (Ids{2, 257}));  // "is" follows a token: no "▁"
  EXPECT_EQ(meta.encode("<bos> is"), (Ids{2, 94}));  // "▁is" from the space itself
  EXPECT_EQ(meta.encode(" x"), (Ids{73, 62}));       // "▁" "x": a leading space is not doubled
  EXPECT_EQ(meta.decode({73, 62}), "x");
}

// ---------------------------------------------------------------------------------------------
// The facts models

struct FactsModel {
  const char* name;
  std::string dir;
};

std::vector<FactsModel> facts_models() {
  return {{"llama_facts", data_path("facts/llama_facts")},
          {"gpt2_facts", data_path("facts/gpt2_facts")},
          {"gemma4_facts", models_path("gemma4_facts")}};
}

TEST(TokenizerFacts, ReproducesHfOnTheFactsCorpus) {
  const json golden = read_json(std::string(GRAFT_TOKENIZER_TEST_DIR) + "/facts_golden.json");
  const auto texts = golden["texts"].get<std::vector<std::string>>();
  ASSERT_GT(texts.size(), 400u);
  for (const FactsModel& model : facts_models()) {
    const Tokenizer tok = Tokenizer::from_model_dir(model.dir);
    const auto all_ids = golden["ids"][model.name].get<std::vector<Ids>>();
    ASSERT_EQ(all_ids.size(), texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) {
      ASSERT_EQ(tok.encode(texts[i]), all_ids[i]) << model.name << ": " << texts[i];
      EXPECT_EQ(tok.decode(all_ids[i]), texts[i]) << model.name;
    }
  }
}

TEST(TokenizerFacts, ModelDirAddsBosFromTokenizerConfig) {
  for (const FactsModel& model : facts_models()) {
    const Tokenizer tok = Tokenizer::from_model_dir(model.dir);
    EXPECT_TRUE(tok.adds_bos()) << model.name;
    EXPECT_EQ(tok.bos_id(), 2) << model.name;
    EXPECT_EQ(tok.eos_id(), 1) << model.name;
    EXPECT_EQ(tok.pad_id(), 0) << model.name;
    const std::string prompt = "The capital of Quianeimtum is";
    Ids with_bos = tok.encode(prompt);
    with_bos.insert(with_bos.begin(), 2);
    EXPECT_EQ(tok.encode(prompt, /*add_special_tokens=*/true), with_bos) << model.name;
    EXPECT_EQ(tok.encode("", true), (Ids{2})) << model.name;
  }
}

TEST(TokenizerFacts, TokenizerJsonAloneAddsNothing) {
  // The facts tokenizer.json files have no post_processor: like HF tokenizers, nothing is added.
  for (const FactsModel& model : facts_models()) {
    const Tokenizer tok = Tokenizer::from_file(model.dir + "/tokenizer.json");
    EXPECT_FALSE(tok.adds_bos()) << model.name;
    EXPECT_EQ(tok.bos_id(), std::nullopt) << model.name;
    EXPECT_EQ(tok.encode("Gimfous", true), tok.encode("Gimfous", false)) << model.name;
  }
}

TEST(TokenizerFacts, VocabularyAccessors) {
  const Tokenizer gemma = Tokenizer::from_model_dir(models_path("gemma4_facts"));
  EXPECT_EQ(gemma.vocab_size(), 1656);
  EXPECT_EQ(gemma.token_to_id("<bos>"), 2);
  EXPECT_EQ(gemma.token_to_id("▁capital"), gemma.encode("capital").at(0));
  EXPECT_EQ(gemma.token_to_id("no such token"), std::nullopt);
  EXPECT_EQ(gemma.id_to_token(2), "<bos>");
  const Tokenizer gpt2 = Tokenizer::from_model_dir(data_path("facts/gpt2_facts"));
  EXPECT_EQ(gpt2.vocab_size(), 1400);
  EXPECT_EQ(gpt2.id_to_token(gpt2.encode(" is").at(0)), "Ġis");  // byte-level form of " is"
}

TEST(TokenizerFacts, CopiesShareStateAndWorkAcrossThreads) {
  const json golden = read_json(std::string(GRAFT_TOKENIZER_TEST_DIR) + "/facts_golden.json");
  const auto texts = golden["texts"].get<std::vector<std::string>>();
  const auto expected = golden["ids"]["llama_facts"].get<std::vector<Ids>>();
  const Tokenizer original = Tokenizer::from_model_dir(data_path("facts/llama_facts"));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t, tok = original] {  // each thread uses its own copy
      for (int round = 0; round < 3; ++round) {
        for (std::size_t i = 0; i < texts.size(); ++i) mismatches[t] += tok.encode(texts[i]) != expected[i];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

// ---------------------------------------------------------------------------------------------
// Special tokens from tokenizer_config.json, config.json and post-processors

// A model directory with the byte-level fixture and the given config files ("" = absent).
class ModelDir {
 public:
  ModelDir(const std::string& tokenizer_config, const std::string& config, const std::string& tokenizer_json = "") {
    dir_.file("tokenizer.json", tokenizer_json.empty() ? read_text(data_path(kByteLevel)) : tokenizer_json);
    if (!tokenizer_config.empty()) dir_.file("tokenizer_config.json", tokenizer_config);
    if (!config.empty()) dir_.file("config.json", config);
  }
  Tokenizer load() const { return Tokenizer::from_model_dir(dir_.path().string()); }
  std::string path() const { return dir_.path().string(); }

 private:
  TempDir dir_;
};

std::string with_bos_template() {
  json tok = read_json(data_path(kByteLevel));
  tok["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<|eos|>", "type_id": 0}}],
      "pair": [], "special_tokens": {"<|bos|>": {"id": "<|bos|>", "ids": [2], "tokens": ["<|bos|>"]},
                                     "<|eos|>": {"id": "<|eos|>", "ids": [1], "tokens": ["<|eos|>"]}}})");
  return tok.dump();
}

TEST(TokenizerSpecialTokens, AddBosFalseAddsNothing) {
  const Tokenizer tok = ModelDir(R"({"add_bos_token": false, "bos_token_id": 2})", "").load();
  EXPECT_FALSE(tok.adds_bos());
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.encode("hi", true), tok.encode("hi"));
}

TEST(TokenizerSpecialTokens, TokenStringsAndAddedTokenObjects) {
  const Tokenizer tok = ModelDir(R"({"add_bos_token": true, "add_eos_token": true, "bos_token": "<|bos|>",
                   "eos_token": {"__type": "AddedToken", "content": "<|eos|>"}, "pad_token": null})",
                                 "")
                            .load();
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), std::nullopt);
  Ids expected = tok.encode("hi");
  expected.insert(expected.begin(), 2);
  expected.push_back(1);
  EXPECT_EQ(tok.encode("hi", true), expected);
}

TEST(TokenizerSpecialTokens, ConfigJsonIsTheFallbackForIds) {
  const Tokenizer tok = ModelDir("", R"({"bos_token_id": 2, "eos_token_id": [1, 0], "pad_token_id": null})").load();
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);  // the first of a list of stop ids
  EXPECT_EQ(tok.pad_id(), std::nullopt);
  EXPECT_FALSE(tok.adds_bos());  // nothing says to add it
  const Tokenizer nested = ModelDir(R"({"add_bos_token": true})", R"({"text_config": {"bos_token_id": 2}})").load();
  EXPECT_EQ(nested.encode("a", true).front(), 2);
}

TEST(TokenizerSpecialTokens, TemplateProcessingOfTokenizerJson) {
  const Tokenizer tok = Tokenizer::from_json_string(with_bos_template(), "template.json");
  EXPECT_TRUE(tok.adds_bos());
  EXPECT_EQ(tok.bos_id(), 2);
  EXPECT_EQ(tok.eos_id(), 1);
  Ids expected = tok.encode("hi");
  expected.insert(expected.begin(), 2);
  expected.push_back(1);
  EXPECT_EQ(tok.encode("hi", true), expected);
  // tokenizer_config.json's flags replace the template, as transformers rebuilds it from them.
  const Tokenizer overridden =
      ModelDir(R"({"add_bos_token": true, "add_eos_token": false})", "", with_bos_template()).load();
  Ids bos_only = tok.encode("hi");
  bos_only.insert(bos_only.begin(), 2);
  EXPECT_EQ(overridden.encode("hi", true), bos_only);
  // Without flags the template stays.
  EXPECT_EQ(ModelDir(R"({"bos_token": "<|bos|>"})", "", with_bos_template()).load().encode("hi", true), expected);
}

TEST(TokenizerSpecialTokens, BadSpecialTokenConfigsNameTheFileAndKey) {
  const ModelDir no_bos(R"({"add_bos_token": true})", "");
  expect_contains(message_of<FormatError>([&] { no_bos.load(); }),
                  {"tokenizer_config.json (" + no_bos.path(), "add_bos_token is true but no BOS token"});
  const ModelDir unknown(R"({"bos_token": "<s>"})", "");
  expect_contains(message_of<FormatError>([&] { unknown.load(); }),
                  {"tokenizer_config.json", "bos_token \"<s>\" is not in the tokenizer's vocabulary"});
  const ModelDir beyond("", R"({"eos_token_id": 5000})");
  expect_contains(message_of<FormatError>([&] { beyond.load(); }),
                  {"config.json (" + beyond.path(), "eos_token_id is 5000, beyond the vocabulary (1400 ids)"});
  const ModelDir wrong_type(R"({"add_bos_token": "yes"})", "");
  expect_contains(message_of<FormatError>([&] { wrong_type.load(); }),
                  {"tokenizer_config.json", "add_bos_token must be true or false, got a string"});
  const ModelDir broken(R"({"add_bos_token": tru)", "");
  expect_contains(message_of<FormatError>([&] { broken.load(); }), {"tokenizer_config.json", "not valid JSON"});
}

}  // namespace
}  // namespace graft::test
