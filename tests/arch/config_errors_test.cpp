// Bad input: each case must be a graft::InputError whose message names the file and the key.
#include <filesystem>
#include <fstream>

#include "arch_test_util.h"

namespace graft::arch::test {
namespace {

using nlohmann::json;

// A scratch directory, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("graft_arch_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name) << text;
    return (path_ / name).string();
  }

 private:
  std::filesystem::path path_;
};

const char* const kLlama = R"({
  "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256})";

// Builds `config` with source "my/config.json" and expects an InputError naming it and `parts`.
std::string expect_rejected(const json& config, std::vector<std::string> parts) {
  parts.push_back("config.json (my/config.json)");
  return expect_input_error([&] { Architecture::from_json(config, "my/config.json"); }, parts);
}

json llama_with(const std::string& key, const json& value) {
  json config = json::parse(kLlama);
  config[key] = value;
  return config;
}

// ---- Files ---------------------------------------------------------------------------------------

TEST(ConfigErrors, MissingConfigJson) {
  ScratchDir dir;
  expect_input_error([&] { Architecture::from_model_dir(dir.path()); }, {"config.json", dir.path(), "not found"});
}

TEST(ConfigErrors, MissingModelDirectory) {
  expect_input_error([] { Architecture::from_model_dir("/no/such/model/dir"); }, {"/no/such/model/dir"});
}

TEST(ConfigErrors, InvalidJson) {
  ScratchDir dir;
  const std::string path = dir.write("config.json", "{\"model_type\": \"llama\", ");
  expect_input_error([&] { Architecture::from_model_dir(dir.path()); }, {"config.json (" + path + ")", "invalid JSON"});
}

TEST(ConfigErrors, TopLevelNotAnObject) { expect_rejected(json::array({1, 2}), {"JSON object"}); }

// ---- model_type ----------------------------------------------------------------------------------

TEST(ConfigErrors, UnknownModelTypeListsSupported) {
  const std::string message = expect_rejected(llama_with("model_type", "foo"), {});
  EXPECT_EQ(
      message,
      "config.json (my/config.json): model_type \"foo\" is not supported; supported: gemma2, gemma3, gemma3_text, "
      "gemma4, gemma4_text, gpt2, llama, mistral, qwen2, qwen3");
}

TEST(ConfigErrors, MissingModelType) {
  json config = json::parse(kLlama);
  config.erase("model_type");
  expect_rejected(config, {"\"model_type\" is missing", "supported: gemma2"});
}

// ---- Keys ----------------------------------------------------------------------------------------

TEST(ConfigErrors, MissingNumHiddenLayers) {
  json config = json::parse(kLlama);
  config.erase("num_hidden_layers");
  expect_rejected(config, {"\"num_hidden_layers\" is missing"});
}

TEST(ConfigErrors, MissingKeyInsideTextConfigNamesThePath) {
  json config = read_json(data_path("configs/gemma-4-E2B-it.config.json"));
  config["text_config"].erase("num_hidden_layers");
  expect_rejected(config, {"\"text_config.num_hidden_layers\" is missing"});
}

TEST(ConfigErrors, WrongTypes) {
  expect_rejected(llama_with("hidden_size", "64"), {"\"hidden_size\" must be an integer, got \"64\""});
  expect_rejected(llama_with("hidden_size", 64.0), {"\"hidden_size\" must be an integer"});  // strict, as HF
  expect_rejected(llama_with("tie_word_embeddings", 1), {"\"tie_word_embeddings\" must be true or false"});
  expect_rejected(llama_with("rms_norm_eps", "small"), {"\"rms_norm_eps\" must be a number"});
  expect_rejected(llama_with("rope_parameters", json::array()), {"\"rope_parameters\" must be an object"});
  json gemma2 = read_json(data_path("hf-parity/gemma2/config.json"));
  gemma2["layer_types"] = "full_attention";
  expect_rejected(gemma2, {"\"layer_types\" must be a list of strings"});
}

TEST(ConfigErrors, SizesOutOfRange) {
  expect_rejected(llama_with("hidden_size", -64), {"\"hidden_size\" must be between 1 and"});
  expect_rejected(llama_with("num_hidden_layers", 0), {"\"num_hidden_layers\" must be between 1 and 4096, got 0"});
  expect_rejected(llama_with("vocab_size", uint64_t{1} << 63), {"\"vocab_size\" is too large"});
}

TEST(ConfigErrors, HeadsNotDividing) {
  expect_rejected(llama_with("hidden_size", 65),
                  {"\"hidden_size\" (65) is not a multiple of \"num_attention_heads\" (4)"});
  expect_rejected(llama_with("num_key_value_heads", 3),
                  {"\"num_attention_heads\" (4) must be a multiple of \"num_key_value_heads\" (3)"});
  json gpt2 = read_json(data_path("hf-parity/gpt2/config.json"));
  gpt2["n_head"] = 5;
  expect_rejected(gpt2, {"\"n_embd\" (64) is not a multiple of \"n_head\" (5)"});
}

TEST(ConfigErrors, LayerTypesWrongLengthOrValue) {
  // LlamaModel never reads layer_types (every layer is full attention), so neither does graft.
  EXPECT_NO_THROW(Architecture::from_json(llama_with("layer_types", json{"full_attention"}), "llama"));
  json gemma2 = read_json(data_path("hf-parity/gemma2/config.json"));
  gemma2["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  expect_rejected(gemma2, {"\"layer_types\" has 3 entries, but num_hidden_layers is 4"});
  gemma2["layer_types"] = {"sliding_attention", "full_attention", "chunked_attention", "full_attention"};
  expect_rejected(gemma2, {"\"layer_types[2]\"", "chunked_attention"});
}

TEST(ConfigErrors, UnsupportedGpt2Flags) {
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"}) {
    json gpt2 = read_json(data_path("hf-parity/gpt2/config.json"));
    gpt2[flag] = true;
    expect_rejected(gpt2, {"\"" + std::string(flag) + "\" is true", "not support"});
  }
}

TEST(ConfigErrors, Rope) {
  expect_rejected(llama_with("rope_parameters", {{"rope_type", "longrope"}, {"rope_theta", 1e4}}),
                  {"\"rope_parameters.rope_type\"", "longrope", "not a supported RoPE type"});
  expect_rejected(llama_with("rope_parameters", {{"rope_type", "linear"}, {"rope_theta", 1e4}}),
                  {"\"rope_parameters.factor\" is missing"});
  expect_rejected(llama_with("rope_parameters", {{"rope_type", "default"}, {"rope_theta", -1.0}}),
                  {"\"rope_parameters.rope_theta\" must be positive"});
  json gemma4 = read_json(data_path("hf-parity/gemma4_31b_like/config.json"));
  gemma4["rope_parameters"].erase("sliding_attention");
  expect_rejected(gemma4, {"\"rope_parameters.sliding_attention\" is missing"});
}

// ---- Family-specific consistency -----------------------------------------------------------------

TEST(ConfigErrors, Gemma4Consistency) {
  const json base = read_json(data_path("hf-parity/gemma4_e2b_like/config.json"));
  json config = base;
  config["num_kv_shared_layers"] = 8;  // every layer shared: nobody computes K/V
  expect_rejected(config, {"\"num_kv_shared_layers\" must be between 0 and 7, got 8"});

  config = base;  // the shared full layer 7 needs a non-shared full layer before layer 4
  config["layer_types"] = {"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
                           "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"};
  config["per_layer_config"] = {{"7", {{"head_dim", 32}}}};
  expect_rejected(config, {"\"num_kv_shared_layers\"", "layer 7 (full_attention)"});

  config = base;  // a KV-shared layer must have its source's K/V shape
  config["per_layer_config"]["5"] = {{"head_dim", 8}};
  expect_rejected(config, {"\"per_layer_config.5.head_dim\"", "layer 5", "layer 2"});

  config = base;
  config["enable_moe_block"] = true;
  expect_rejected(config, {"\"num_experts\" is missing"});

  config = base;
  config["use_bidirectional_attention"] = "all";
  expect_rejected(config, {"\"use_bidirectional_attention\"", "not supported"});

  config = base;
  config["sliding_window"] = nullptr;
  expect_rejected(config, {"\"sliding_window\" is null", "layer 0"});
}

TEST(ConfigErrors, PerLayerConfig) {
  json config = json::parse(kLlama);
  config["per_layer_config"] = {{"layer0", {{"intermediate_size", 8}}}};
  expect_rejected(config, {"\"per_layer_config.layer0\" is not a layer index"});
  config["per_layer_config"] = {{"4", {{"intermediate_size", 8}}}};
  expect_rejected(config, {"\"per_layer_config.4\"", "num_hidden_layers = 4"});
  config["per_layer_config"] = {{"1", {{"skip", json::array({"mlp"})}}}};
  expect_rejected(config, {"\"per_layer_config.1.skip\" cannot be set per layer"});
  config["per_layer_config"] = {{"1", {{"intermediate_size", "wide"}}}};
  expect_rejected(config, {"\"per_layer_config.1.intermediate_size\" must be an integer"});
}

TEST(ConfigErrors, Qwen2SlidingLayerWithoutWindow) {
  json config = read_json(data_path("hf-parity/qwen2/config.json"));  // use_sliding_window false
  config["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  expect_rejected(config, {"\"sliding_window\" is null", "layer 1"});
}

TEST(ConfigErrors, ShapesTooLargeForInt64) {
  json config = json::parse(kLlama);
  config["vocab_size"] = 2147483647;
  config["hidden_size"] = 2147483644;
  config["intermediate_size"] = 2147483647;
  config["num_hidden_layers"] = 4096;
  config["head_dim"] = 2;
  expect_rejected(config, {"2^63"});
}

// ---- Layer index ---------------------------------------------------------------------------------

TEST(ConfigErrors, LayerIndexOutOfRange) {
  auto arch = from_text(kLlama);
  expect_input_error([&] { arch->layer(4); }, {"layer 4 is out of range", "4 layers"});
  expect_input_error([&] { arch->kv_source(-1); }, {"layer -1 is out of range"});
  expect_input_error([&] { arch->intermediate_size_for_layer(99); }, {"layer 99"});
}

}  // namespace
}  // namespace graft::arch::test
