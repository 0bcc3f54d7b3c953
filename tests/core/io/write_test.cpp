// Writing: round trips, byte-for-byte agreement with Python's writer, validation, and atomicity (a
// failed write leaves the destination as it was and no temporary file behind).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include "io_test_util.h"

namespace graft::io::test {
namespace {

std::string view_bytes(const TensorView& view) {
  return std::string(reinterpret_cast<const char*>(view.data), view.nbytes);
}

template <typename T>
TensorToWrite tensor_of(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& data) {
  return {name, dtype, std::move(shape), data.data(), data.size() * sizeof(T)};
}

TEST(WriteSafetensors, RoundTripF32F16BF16I64) {
  TempDir dir;
  const std::string path = dir / "out.safetensors";
  const std::vector<float> f32 = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 65504.0f};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff};           // 1, -2, 65504
  const std::vector<uint16_t> bf16 = {0x3f80, 0x4049, 0xff80, 0x0001};  // 1, 3.14, -inf, denormal
  const std::vector<int64_t> i64 = {0, -1, INT64_MAX, INT64_MIN, 42};
  // An odd-sized tensor first: the ones after it start at offsets that are not multiples of 8.
  const std::vector<uint8_t> u8 = {7, 8, 9};
  const std::vector<TensorToWrite> tensors = {
      tensor_of("u8", DType::U8, {3}, u8),       tensor_of("f32", DType::F32, {2, 3}, f32),
      tensor_of("f16", DType::F16, {3}, f16),    tensor_of("bf16", DType::BF16, {2, 2}, bf16),
      tensor_of("i64", DType::I64, {5, 1}, i64), {"scalar", DType::F32, {}, f32.data(), 4},
      {"empty", DType::F32, {0, 4}, nullptr, 0}};
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"graft", "test"}};
  write_safetensors(path, tensors, metadata);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.safetensors"});  // no temporary file left

  const auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.names(), (std::vector<std::string>{"u8", "f32", "f16", "bf16", "i64", "scalar", "empty"}));
  for (const auto& expected : tensors) {
    SCOPED_TRACE(expected.name);
    const TensorView& view = file.get(expected.name);
    EXPECT_EQ(view.dtype, expected.dtype);
    EXPECT_EQ(view.shape, expected.shape);
    ASSERT_EQ(view.nbytes, expected.nbytes);
    EXPECT_EQ(view_bytes(view), std::string(static_cast<const char*>(expected.data), expected.nbytes));
  }
}

TEST(WriteSafetensors, HeaderLayoutMatchesPythonWriter) {
  TempDir dir;
  const std::string path = dir / "out.safetensors";
  const std::vector<float> data = {1, 2};
  write_safetensors(path, {tensor_of("x", DType::F32, {2}, data)}, {{"b", "2"}, {"a", "1"}});
  const std::string bytes = read_bytes(path);
  const std::string json = R"({"__metadata__":{"a":"1","b":"2"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const size_t padded = (json.size() + 7) / 8 * 8;
  ASSERT_EQ(bytes.size(), 8 + padded + 8);
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]), padded);
  EXPECT_EQ(bytes.substr(1, 7), std::string(7, '\0'));
  EXPECT_EQ(bytes.substr(8, padded), json + std::string(padded - json.size(), ' '));
}

TEST(WriteSafetensors, NoTensorsNoMetadata) {
  TempDir dir;
  write_safetensors(dir / "empty.safetensors", {});
  EXPECT_EQ(read_bytes(dir / "empty.safetensors"), raw_safetensors("{}      ", 0));
  EXPECT_TRUE(SafetensorsFile::open(dir / "empty.safetensors").names().empty());
}

// Rewriting what Python's safetensors wrote, in the same order with the same metadata, must give the
// very same bytes: the strongest evidence that Python reads what graft writes.
TEST(WriteSafetensors, RewritingPythonFilesIsByteIdentical) {
  TempDir dir;
  for (const std::string relative : {"hf-parity/gpt2/model.safetensors", "hf-parity/gpt2/reference.safetensors",
                                     "hf-parity/gemma3/model.safetensors"}) {
    SCOPED_TRACE(relative);
    const auto original = SafetensorsFile::open(fixture(relative));
    std::vector<TensorToWrite> tensors;
    for (const auto& view : original.tensors())
      tensors.push_back({view.name, view.dtype, view.shape, view.data, view.nbytes});
    const std::string copy = dir / "copy.safetensors";
    write_safetensors(copy, tensors, original.metadata());
    EXPECT_TRUE(read_bytes(copy) == read_bytes(fixture(relative)));
  }
}

TEST(WriteSafetensors, InvalidTensorsAreRefusedBeforeAnythingIsWritten) {
  TempDir dir;
  const std::string path = dir / "out.safetensors";
  const std::vector<float> data = {1, 2, 3};
  EXPECT_THROW_MESSAGE(write_safetensors(path, {{"t", DType::F32, {2, 2}, data.data(), 12}}), InputError, path,
                       "tensor \"t\"", "12 bytes given but F32 [2, 2] needs 16");
  EXPECT_THROW_MESSAGE(write_safetensors(path, {tensor_of("t", DType::F32, {3}, data),
                                                tensor_of("t", DType::F32, {3}, data)}),
                       InputError, path, "tensor \"t\"", "twice");
  EXPECT_THROW_MESSAGE(write_safetensors(path, {tensor_of("__metadata__", DType::F32, {3}, data)}), InputError,
                       "reserved");
  EXPECT_THROW_MESSAGE(write_safetensors(path, {{"t", DType::F32, {-3}, data.data(), 12}}), InputError, "tensor \"t\"",
                       "negative");
  EXPECT_THROW_MESSAGE(write_safetensors(path, {{"t", DType::F32, {3}, nullptr, 12}}), InputError, "tensor \"t\"",
                       "null");
  EXPECT_THROW_MESSAGE(write_safetensors(path, {tensor_of(std::string("bad\xff"), DType::F32, {3}, data)}), InputError,
                       path, "UTF-8");
  EXPECT_TRUE(dir.entries().empty());
}

TEST(WriteSafetensors, IntoAMissingDirectoryLeavesNothingBehind) {
  TempDir dir;
  const std::string path = dir / "absent/out.safetensors";
  const std::vector<float> data = {1};
  EXPECT_THROW_MESSAGE(write_safetensors(path, {tensor_of("t", DType::F32, {1}, data)}), InputError, path,
                       "No such file or directory");
  EXPECT_FALSE(fs::exists(dir / "absent"));
  EXPECT_TRUE(dir.entries().empty());
}

// A failure in the middle of writing the data (here: a tensor whose bytes cannot be read, which
// makes write() fail with EFAULT) must leave the old file untouched and remove the temporary one.
TEST(WriteSafetensors, FailureMidWriteLeavesTheDestinationUntouched) {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  write_bytes(path, "previous contents");
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* unreadable = ::mmap(nullptr, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(unreadable, MAP_FAILED);
  const std::vector<float> good = {1, 2};
  EXPECT_THROW_MESSAGE(write_safetensors(path, {tensor_of("good", DType::F32, {2}, good),
                                                {"unreadable", DType::U8, {16}, unreadable, 16}}),
                       InputError, path, "cannot write", ".tmp.");
  ::munmap(unreadable, page);
  EXPECT_EQ(read_bytes(path), "previous contents");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(WriteSafetensors, FailedRenameRemovesTheTemporaryFile) {
  TempDir dir;
  const std::string path = dir / "taken";
  fs::create_directory(path);
  write_bytes(path + "/inside", "x");  // a non-empty directory cannot be replaced by a file
  const std::vector<float> data = {1};
  EXPECT_THROW_MESSAGE(write_safetensors(path, {tensor_of("t", DType::F32, {1}, data)}), InputError, path,
                       "cannot rename");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken"});
  EXPECT_EQ(read_bytes(path + "/inside"), "x");
}

TEST(WriteSafetensors, OverwritingAMappedFileKeepsExistingViewsValid) {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  const std::vector<float> before = {1, 2}, after = {3, 4};
  write_safetensors(path, {tensor_of("w", DType::F32, {2}, before)});
  const auto old_file = SafetensorsFile::open(path);
  write_safetensors(path, {tensor_of("w", DType::F32, {2}, after)});
  // The rename replaced the directory entry; the old mapping still holds the old inode's bytes.
  const auto as_bytes = [](const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  };
  EXPECT_EQ(view_bytes(old_file.get("w")), as_bytes(before));
  EXPECT_EQ(view_bytes(SafetensorsFile::open(path).get("w")), as_bytes(after));
}

}  // namespace
}  // namespace graft::io::test
