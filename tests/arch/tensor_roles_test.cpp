// The tensor-role table (arch/tensor_roles.h) against what the family files name: on every fixture
// and official config, a role is named only in the families its row lists, on every layer where
// the row says so, with the layout and shape its row implies.
#include <filesystem>

#include "arch_test_util.h"

namespace graft::arch::test {
namespace {

// Every config the tests hold: each fixture model's, and the official Gemma 4 ones.
std::vector<std::string> config_paths() {
  std::vector<std::string> paths;
  for (const std::string& dir : fixture_model_dirs()) paths.push_back(dir + "/config.json");
  for (const char* name : {"gemma-4-E2B-it", "gemma-4-E4B-it", "gemma-4-31B-it", "gemma-4-26B-A4B-it"})
    paths.push_back(data_path(std::string("configs/") + name + ".config.json"));
  return paths;
}

std::string config_name(const std::string& path) {
  const std::filesystem::path p(path);
  return p.filename() == "config.json" ? p.parent_path().filename().string() : p.stem().string();
}

class TensorRoleTable : public ::testing::TestWithParam<std::string> {};

TEST_P(TensorRoleTable, RolesAreNamedWhereTheTableSays) {
  auto arch = Architecture::from_config_file(GetParam());
  const Family family = arch->family();
  for (const LayerSpec& layer : arch->spec().layers) {
    for (const TensorRoleInfo& role : kTensorRoles) {
      SCOPED_TRACE(std::string(family_name(family)) + " layer " + std::to_string(layer.index) + " " + role.name);
      const TensorNames& names = layer.tensors[role.role];
      const bool named = !names.weight.empty();
      if (contains(role.families, family) && role.presence == Presence::EveryLayer) EXPECT_TRUE(named);
      if (!named) continue;
      EXPECT_TRUE(contains(role.families, family)) << names.weight;
      if (role.binding == TensorBinding::Plain) EXPECT_TRUE(names.bias.empty());
      const bool conv1d = role.binding == TensorBinding::Linear && family == Family::GPT2;
      EXPECT_EQ(names.layout, conv1d ? WeightLayout::InOut : WeightLayout::OutIn);
    }
  }
}

// Each named role's weight is listed with the rank its row gives, in role order within the layer.
TEST_P(TensorRoleTable, ExpectedTensorsFollowTheTable) {
  auto arch = Architecture::from_config_file(GetParam());
  const std::map<std::string, std::vector<int64_t>> shapes = tensor_map(*arch);
  std::vector<std::string> listed;
  for (const TensorSpec& t : arch->expected_tensors()) listed.push_back(t.name);
  for (const LayerSpec& layer : arch->spec().layers) {
    size_t previous = 0;
    for (const TensorRoleInfo& role : kTensorRoles) {
      const std::string& weight = layer.tensors[role.role].weight;
      if (weight.empty()) continue;
      SCOPED_TRACE(weight);
      ASSERT_EQ(shapes.count(weight), 1u);
      EXPECT_EQ(shapes.at(weight).size(), static_cast<size_t>(role.shape.rank));
      const size_t position = static_cast<size_t>(std::find(listed.begin(), listed.end(), weight) - listed.begin());
      EXPECT_GT(position, previous);  // after the embedding and every earlier role
      previous = position;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, TensorRoleTable, ::testing::ValuesIn(config_paths()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return gtest_name(config_name(info.param));
                         });

TEST(TensorRoleTable, RolesEveryFamilyHas) {
  // Roles every family has: the norms around each block's input, the output projection, up and down.
  for (TensorRole role :
       {TensorRole::AttnPreNorm, TensorRole::O, TensorRole::MlpPreNorm, TensorRole::Up, TensorRole::Down}) {
    EXPECT_EQ(role_info(role).families, kEveryFamily) << role_info(role).name;
    EXPECT_EQ(role_info(role).presence, Presence::EveryLayer) << role_info(role).name;
  }
  // GPT-2 reads its attention through the fused projection only.
  for (const TensorRoleInfo& role : kTensorRoles) {
    const bool attention_input = role.role == TensorRole::Q || role.role == TensorRole::K || role.role == TensorRole::V;
    if (attention_input) EXPECT_FALSE(contains(role.families, Family::GPT2)) << role.name;
  }
  EXPECT_EQ(role_info(TensorRole::QKV).families, family_bit(Family::GPT2));
}

}  // namespace
}  // namespace graft::arch::test
