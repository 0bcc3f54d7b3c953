// Checkpoint: single file, index + shards, index-less shards, and the errors of each layout.
#include <gtest/gtest.h>

#include "io_test_util.h"

namespace graft::io::test {
namespace {

// Writes one shard holding F32 tensors of shape [2] whose values are {base, base + 1}.
void write_shard(const std::string& path, const std::vector<std::pair<std::string, float>>& tensors) {
  std::vector<std::vector<float>> values;
  values.reserve(tensors.size());
  std::vector<TensorToWrite> out;
  for (const auto& [name, base] : tensors) {
    values.push_back({base, base + 1});
    out.push_back({name, DType::F32, {2}, values.back().data(), 2 * sizeof(float)});
  }
  write_safetensors(path, out);
}

float first_value(const TensorView& view) {
  float value;
  std::memcpy(&value, view.data, sizeof value);
  return value;
}

constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

// model.safetensors.index.json as transformers writes it (metadata, then weight_map).
std::string index_json(const std::vector<std::pair<std::string, std::string>>& weight_map) {
  std::string json = R"({"metadata": {"total_size": 32}, "weight_map": {)";
  for (size_t i = 0; i < weight_map.size(); ++i)
    json += (i ? ", " : "") + std::string("\"") + weight_map[i].first + "\": \"" + weight_map[i].second + "\"";
  return json + "}}";
}

// A two-shard checkpoint as transformers saves it.
void write_sharded(const TempDir& dir, bool with_index = true) {
  write_shard(dir / kShard1, {{"model.embed_tokens.weight", 1}, {"model.layers.0.mlp.down_proj.weight", 3}});
  write_shard(dir / kShard2, {{"model.layers.1.mlp.down_proj.weight", 5}, {"lm_head.weight", 7}});
  if (!with_index) return;
  write_bytes(dir / "model.safetensors.index.json", index_json({{"model.embed_tokens.weight", kShard1},
                                                                {"model.layers.0.mlp.down_proj.weight", kShard1},
                                                                {"model.layers.1.mlp.down_proj.weight", kShard2},
                                                                {"lm_head.weight", kShard2}}));
}

const std::vector<std::string> kShardedNames = {"lm_head.weight", "model.embed_tokens.weight",
                                                "model.layers.0.mlp.down_proj.weight",
                                                "model.layers.1.mlp.down_proj.weight"};

void expect_sharded_contents(const Checkpoint& checkpoint) {
  EXPECT_EQ(checkpoint.names(), kShardedNames);  // sorted
  ASSERT_EQ(checkpoint.files().size(), 2u);
  EXPECT_EQ(fs::path(checkpoint.files()[0].path()).filename(), kShard1);
  EXPECT_EQ(fs::path(checkpoint.files()[1].path()).filename(), kShard2);
  EXPECT_FLOAT_EQ(first_value(checkpoint.get("model.embed_tokens.weight")), 1);
  EXPECT_FLOAT_EQ(first_value(checkpoint.get("model.layers.0.mlp.down_proj.weight")), 3);
  EXPECT_FLOAT_EQ(first_value(checkpoint.get("model.layers.1.mlp.down_proj.weight")), 5);
  EXPECT_FLOAT_EQ(first_value(checkpoint.get("lm_head.weight")), 7);
  EXPECT_EQ(checkpoint.get("lm_head.weight").file->path(), checkpoint.files()[1].path());
}

TEST(Checkpoint, SingleFileFixture) {
  const std::string dir = fixture("hf-parity/llama3");
  const Checkpoint checkpoint = Checkpoint::open(dir);
  EXPECT_EQ(checkpoint.dir(), dir);
  ASSERT_EQ(checkpoint.files().size(), 1u);  // reference.safetensors next to it is not part of the model
  EXPECT_EQ(checkpoint.files()[0].path(), dir + "/model.safetensors");
  const auto names = checkpoint.names();
  EXPECT_EQ(names.size(), 30u);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_TRUE(checkpoint.contains("lm_head.weight"));
  EXPECT_FALSE(checkpoint.contains("logits"));
  const TensorView& down = checkpoint.get("model.layers.1.mlp.down_proj.weight", {64, 176});
  float value;
  std::memcpy(&value, down.data + (3 * 176 + 7) * sizeof(float), sizeof value);
  EXPECT_FLOAT_EQ(value, 0.08882301f);  // Python: safe_open(...).get_tensor(name)[3, 7]
}

TEST(Checkpoint, ShardedWithIndex) {
  TempDir dir;
  write_sharded(dir);
  expect_sharded_contents(Checkpoint::open(dir.path().string()));
}

TEST(Checkpoint, ShardedWithoutIndex) {
  TempDir dir;
  write_sharded(dir, /*with_index=*/false);
  write_shard(dir / "reference.safetensors", {{"logits", 9}});  // a stray file must not join the model
  expect_sharded_contents(Checkpoint::open(dir.path().string()));
}

TEST(Checkpoint, UnindexedShardsMustBeComplete) {
  TempDir dir;
  write_sharded(dir, /*with_index=*/false);
  fs::remove(dir / kShard2);
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), InputError, dir.path().string(),
                       "model.safetensors.index.json", "shard 2 of 2 is missing");
}

TEST(Checkpoint, UnindexedShardsMustNotRepeatATensor) {
  TempDir dir;
  write_shard(dir / kShard1, {{"a", 1}, {"b", 2}});
  write_shard(dir / kShard2, {{"b", 3}});
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, "tensor \"b\" is in both", kShard1, kShard2);
}

TEST(Checkpoint, IndexListsAShardThatIsMissing) {
  TempDir dir;
  write_sharded(dir);
  fs::remove(dir / kShard2);
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, "model.safetensors.index.json",
                       std::string("shard \"") + kShard2 + "\"", "is missing", "lm_head.weight");
}

TEST(Checkpoint, IndexListsATensorItsShardLacks) {
  TempDir dir;
  write_sharded(dir);
  write_shard(dir / kShard2, {{"model.layers.1.mlp.down_proj.weight", 5}});  // lm_head.weight gone
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, "model.safetensors.index.json",
                       "tensor \"lm_head.weight\"", kShard2, "does not contain it");
}

TEST(Checkpoint, MalformedIndex) {
  TempDir dir;
  const std::string index = dir / "model.safetensors.index.json";
  write_bytes(index, "{oops");
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, index, "not valid JSON");
  write_bytes(index, R"({"metadata": {}})");
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, index, "weight_map");
  write_bytes(index, R"({"weight_map": {"a": 3}})");
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, index, "tensor \"a\"");
  write_bytes(index, R"({"weight_map": {"a": "../elsewhere/model.safetensors"}})");
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), FormatError, index, "tensor \"a\"",
                       "inside the model directory");
}

TEST(Checkpoint, MissingDirectoryOrNoWeights) {
  TempDir dir;
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir / "absent"), InputError, dir / "absent", "No such file or directory");
  write_bytes(dir / "file", "x");
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir / "file"), InputError, dir / "file", "not a directory");
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), InputError, dir.path().string(), "model.safetensors",
                       "model.safetensors.index.json", "no .safetensors file");
  write_shard(dir / "weights.safetensors", {{"a", 1}});
  EXPECT_THROW_MESSAGE(Checkpoint::open(dir.path().string()), InputError, "it holds only weights.safetensors");
}

TEST(Checkpoint, MissingTensorNamesDirectoryAndSuggests) {
  const std::string dir = fixture("hf-parity/llama3");
  const Checkpoint checkpoint = Checkpoint::open(dir);
  EXPECT_THROW_MESSAGE(checkpoint.get("model.layers.1.mlp.down_proj.weigth"), InputError, dir,
                       "\"model.layers.1.mlp.down_proj.weigth\"",
                       "did you mean \"model.layers.1.mlp.down_proj.weight\"");
  EXPECT_THROW_MESSAGE(checkpoint.get("layers.0.input_layernorm.weight"), InputError,
                       "did you mean \"model.layers.0.input_layernorm.weight\"");
  EXPECT_THROW_MESSAGE(checkpoint.get("x", {1}), InputError, dir, "\"x\"");
}

TEST(Checkpoint, ShapeMismatchNamesTensorFileAndBothShapes) {
  const std::string dir = fixture("hf-parity/llama3");
  const Checkpoint checkpoint = Checkpoint::open(dir);
  EXPECT_NO_THROW(checkpoint.get("model.embed_tokens.weight", {256, 64}));
  EXPECT_THROW_MESSAGE(checkpoint.get("model.embed_tokens.weight", {64, 256}), FormatError, dir + "/model.safetensors",
                       "\"model.embed_tokens.weight\"", "has shape [256, 64]", "expected [64, 256]");
}

}  // namespace
}  // namespace graft::io::test
