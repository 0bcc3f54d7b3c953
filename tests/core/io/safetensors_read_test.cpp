// Reading: every fixture against what Python's safetensors reads (fixture_manifest.tsv), spot values,
// metadata, the mapping's copy-on-write promise, and the MappedFile errors.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "io_test_util.h"

namespace graft::io::test {
namespace {

struct ManifestEntry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint32_t crc;
};

std::vector<int64_t> parse_shape_field(const std::string& field) {
  std::vector<int64_t> shape;
  std::stringstream in(field);
  std::string dim;
  while (std::getline(in, dim, ',')) shape.push_back(std::stoll(dim));
  return shape;
}

// file (relative to tests/data) -> tensors in header order, as Python's safetensors read them.
std::map<std::string, std::vector<ManifestEntry>> load_manifest() {
  std::ifstream in(std::string(GRAFT_MANIFEST));
  if (!in) throw std::runtime_error("cannot read " + std::string(GRAFT_MANIFEST));
  std::map<std::string, std::vector<ManifestEntry>> manifest;
  std::string line;
  while (std::getline(in, line)) {
    std::stringstream fields(line);
    std::string file, name, dtype, shape, crc;
    std::getline(fields, file, '\t');
    std::getline(fields, name, '\t');
    std::getline(fields, dtype, '\t');
    std::getline(fields, shape, '\t');
    std::getline(fields, crc, '\t');
    const auto checksum = static_cast<uint32_t>(std::stoul(crc, nullptr, 16));
    manifest[file].push_back({name, dtype, parse_shape_field(shape), checksum});
  }
  return manifest;
}

TEST(SafetensorsRead, EveryFixtureMatchesWhatPythonReads) {
  const auto manifest = load_manifest();
  // 10 model directories x (model + reference); a fixture added without regenerating the manifest fails here.
  size_t files_on_disk = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fixture("hf-parity")))
    if (entry.path().extension() == ".safetensors") ++files_on_disk;
  ASSERT_EQ(manifest.size(), files_on_disk);
  ASSERT_GE(manifest.size(), 2u);

  for (const auto& [relative, expected] : manifest) {
    SCOPED_TRACE(relative);
    const SafetensorsFile file = SafetensorsFile::open(fixture(relative));
    EXPECT_EQ(file.path(), fixture(relative));
    const auto names = file.names();
    ASSERT_EQ(names.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      SCOPED_TRACE(expected[i].name);
      EXPECT_EQ(names[i], expected[i].name);  // file order
      ASSERT_TRUE(file.contains(expected[i].name));
      const TensorView& view = file.get(expected[i].name);
      EXPECT_EQ(&view, &file.tensors()[i]);
      EXPECT_EQ(view.name, expected[i].name);
      EXPECT_STREQ(dtype_name(view.dtype), expected[i].dtype.c_str());
      EXPECT_EQ(view.shape, expected[i].shape);
      EXPECT_EQ(view.nbytes, static_cast<size_t>(view.numel()) * dtype_size(view.dtype));
      EXPECT_EQ(crc32(view.data, view.nbytes), expected[i].crc)
          << "the bytes differ from what Python read; if the fixture was regenerated on purpose, rerun "
             "tests/core/io/make_fixture_manifest.py";
      // Zero-copy: the view points into the mapping it keeps alive.
      EXPECT_GE(view.data, view.file->data());
      EXPECT_LE(view.data + view.nbytes, view.file->data() + view.file->size());
    }
  }
}

float float_at(const TensorView& view, size_t index) {
  EXPECT_EQ(view.dtype, DType::F32);
  EXPECT_LT(index, static_cast<size_t>(view.numel()));
  float value;
  std::memcpy(&value, view.data + index * sizeof(float), sizeof value);  // the data may be unaligned
  return value;
}

int64_t int_at(const TensorView& view, size_t index) {
  EXPECT_EQ(view.dtype, DType::I64);
  int64_t value;
  std::memcpy(&value, view.data + index * sizeof(int64_t), sizeof value);
  return value;
}

// Values printed by Python: safe_open(path, "np").get_tensor(name)[index].
TEST(SafetensorsRead, SpotValuesMatchPython) {
  const auto gpt2 = SafetensorsFile::open(fixture("hf-parity/gpt2/model.safetensors"));
  const TensorView& wte = gpt2.get("transformer.wte.weight");
  ASSERT_EQ(wte.shape, (std::vector<int64_t>{256, 64}));
  EXPECT_FLOAT_EQ(float_at(wte, 0), -0.11952969f);
  EXPECT_FLOAT_EQ(float_at(wte, 17 * 64 + 5), 0.12742378f);
  EXPECT_FLOAT_EQ(float_at(wte, 255 * 64 + 63), 0.066341825f);
  const TensorView& bias = gpt2.get("transformer.h.0.attn.c_attn.bias");
  EXPECT_FLOAT_EQ(float_at(bias, 0), 0.33983967f);
  EXPECT_FLOAT_EQ(float_at(bias, 191), -0.13119766f);

  const auto llama = SafetensorsFile::open(fixture("hf-parity/llama3/model.safetensors"));
  const TensorView& down = llama.get("model.layers.1.mlp.down_proj.weight");
  ASSERT_EQ(down.shape, (std::vector<int64_t>{64, 176}));
  EXPECT_FLOAT_EQ(float_at(down, 3 * 176 + 7), 0.08882301f);

  const auto reference = SafetensorsFile::open(fixture("hf-parity/gpt2/reference.safetensors"));
  const TensorView& ids = reference.get("input_ids");
  ASSERT_EQ(ids.shape, (std::vector<int64_t>{2, 20}));
  const std::vector<int64_t> first_ids = {191, 21, 107, 192, 9};
  for (size_t i = 0; i < first_ids.size(); ++i) EXPECT_EQ(int_at(ids, i), first_ids[i]);
  EXPECT_EQ(int_at(ids, 39), 222);
  const TensorView& logits = reference.get("logits");
  ASSERT_EQ(logits.shape, (std::vector<int64_t>{2, 20, 256}));
  EXPECT_FLOAT_EQ(float_at(logits, 0), -0.45904064f);
  EXPECT_FLOAT_EQ(float_at(logits, (1 * 20 + 19) * 256 + 255), 1.4073449f);
}

TEST(SafetensorsRead, Metadata) {
  EXPECT_EQ(SafetensorsFile::open(fixture("hf-parity/gpt2/model.safetensors")).metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}}));
  EXPECT_TRUE(SafetensorsFile::open(fixture("hf-parity/gpt2/reference.safetensors")).metadata().empty());
}

TEST(SafetensorsRead, ViewsKeepTheMappingAlive) {
  TensorView view;
  {
    const auto file = SafetensorsFile::open(fixture("hf-parity/gpt2/model.safetensors"));
    view = file.get("transformer.wte.weight");
  }
  EXPECT_FLOAT_EQ(float_at(view, 0), -0.11952969f);  // ASan would flag a use after munmap
}

TEST(SafetensorsRead, GetMissingTensorNamesFileAndSuggests) {
  const std::string path = fixture("hf-parity/gpt2/model.safetensors");
  const auto file = SafetensorsFile::open(path);
  EXPECT_FALSE(file.contains("transformer.wte.weights"));
  EXPECT_THROW_MESSAGE(file.get("transformer.wte.weights"), InputError, path, "\"transformer.wte.weights\"",
                       "did you mean \"transformer.wte.weight\"");
  // A missing prefix is the usual mismatch between code and checkpoint.
  EXPECT_THROW_MESSAGE(file.get("h.0.ln_1.weight"), InputError, "did you mean \"transformer.h.0.ln_1.weight\"");
  try {
    file.get("lm_head.weight");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).find("did you mean"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsRead, ScalarsAndEmptyTensors) {
  const std::string header =
      R"({"scalar":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
      R"("empty":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]},)"
      R"("huge_but_empty":{"dtype":"F64","shape":[9223372036854775807,2,0],"data_offsets":[4,4]},)"
      R"("bytes":{"dtype":"U8","shape":[3],"data_offsets":[4,7]}})";
  const auto file = SafetensorsFile::parse(in_memory(raw_safetensors(header, 7)));
  EXPECT_EQ(file.names(), (std::vector<std::string>{"scalar", "empty", "huge_but_empty", "bytes"}));
  EXPECT_EQ(file.get("scalar").numel(), 1);
  EXPECT_EQ(file.get("scalar").nbytes, 4u);
  EXPECT_EQ(file.get("empty").numel(), 0);
  EXPECT_EQ(file.get("huge_but_empty").numel(), 0);
  EXPECT_EQ(file.get("huge_but_empty").nbytes, 0u);
  EXPECT_EQ(std::to_integer<int>(file.get("bytes").data[0]), 4);  // raw_safetensors counts bytes
}

TEST(SafetensorsRead, GapsAndTrailingBytesAreAccepted) {
  // The Python reader insists on contiguous data; graft reads whatever the offsets describe.
  const std::string header = R"({"a":{"dtype":"I8","shape":[2],"data_offsets":[4,6]}})";
  const auto file = SafetensorsFile::parse(in_memory(raw_safetensors(header, 10)));
  EXPECT_EQ(std::to_integer<int>(file.get("a").data[1]), 5);
}

TEST(DType, NamesSizesAndParsing) {
  const std::vector<std::pair<DType, size_t>> all = {{DType::F64, 8},  {DType::F32, 4},     {DType::F16, 2},
                                                     {DType::BF16, 2}, {DType::I64, 8},     {DType::I32, 4},
                                                     {DType::I16, 2},  {DType::I8, 1},      {DType::U8, 1},
                                                     {DType::BOOL, 1}, {DType::F8_E4M3, 1}, {DType::F8_E5M2, 1}};
  for (const auto& [dtype, size] : all) {
    EXPECT_EQ(dtype_size(dtype), size) << dtype_name(dtype);
    EXPECT_EQ(parse_dtype(dtype_name(dtype), "ctx"), dtype);
  }
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  EXPECT_STREQ(dtype_name(DType::F8_E4M3), "F8_E4M3");
  EXPECT_THROW_MESSAGE(parse_dtype("f32", "somewhere"), FormatError, "somewhere", "\"f32\"", "F32, F16");
}

TEST(MappedFile, PatchingTheMappingNeverReachesTheFile) {
  TempDir dir;
  const std::string path = dir / "copy.safetensors";
  const std::string original = read_bytes(fixture("hf-parity/gpt2/model.safetensors"));
  write_bytes(path, original);
  {
    const auto file = MappedFile::open(path);
    ASSERT_EQ(file->size(), original.size());
    EXPECT_EQ(std::memcmp(file->data(), original.data(), original.size()), 0);
    std::byte* last = file->mutable_data() + file->size() - 1;
    *last = ~*last;
    EXPECT_NE(std::to_integer<char>(*last), original.back());
  }
  EXPECT_EQ(read_bytes(path), original);
}

TEST(MappedFile, MissingDirectoryAndEmptyFilesAreInputErrors) {
  TempDir dir;
  EXPECT_THROW_MESSAGE(MappedFile::open(dir / "absent.safetensors"), InputError, dir / "absent.safetensors",
                       "No such file or directory");
  EXPECT_THROW_MESSAGE(MappedFile::open(dir.path().string()), InputError, dir.path().string(), "Is a directory");
  write_bytes(dir / "empty.safetensors", "");
  EXPECT_THROW_MESSAGE(MappedFile::open(dir / "empty.safetensors"), InputError, dir / "empty.safetensors", "empty");
  EXPECT_THROW_MESSAGE(SafetensorsFile::open(dir / "absent.safetensors"), InputError, dir / "absent.safetensors");
}

TEST(MappedFile, FromBytes) {
  const auto file = in_memory("abc", "buffer-name");
  EXPECT_EQ(file->path(), "buffer-name");
  ASSERT_EQ(file->size(), 3u);
  EXPECT_EQ(std::to_integer<char>(file->data()[2]), 'c');
  file->mutable_data()[0] = std::byte{'x'};
  EXPECT_EQ(std::to_integer<char>(file->data()[0]), 'x');
  const auto empty = MappedFile::from_bytes({});
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_EQ(empty->path(), "<memory>");
}

}  // namespace
}  // namespace graft::io::test
