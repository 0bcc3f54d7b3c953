// Malformed files: each must end in a FormatError that names the file (and the tensor when one is
// at fault), never in a crash or an out-of-bounds read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "io_test_util.h"

namespace graft::io::test {
namespace {

const std::string kName = "bad.safetensors";

// Parses `bytes` (held in memory under the name kName) and expects a FormatError mentioning kName
// and every fragment given.
#define EXPECT_PARSE_ERROR(bytes, ...) \
  EXPECT_THROW_MESSAGE(SafetensorsFile::parse(in_memory((bytes), kName)), FormatError, kName, __VA_ARGS__)

std::string one_tensor(const std::string& entry) { return R"({"t":)" + entry + "}"; }

TEST(SafetensorsErrors, TruncatedFixture) {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  const std::string original = read_bytes(fixture("hf-parity/gpt2/model.safetensors"));
  // transformer.wte.weight is the last tensor: cutting the tail leaves its end past the file's.
  write_bytes(path, original.substr(0, original.size() - 100));
  EXPECT_THROW_MESSAGE(SafetensorsFile::open(path), FormatError, path, "tensor \"transformer.wte.weight\"",
                       "data_offsets [633088, 698624]", "end past the end of the file", "truncated");
  // Cut inside the header: the announced header length no longer fits.
  write_bytes(path, original.substr(0, 1000));
  EXPECT_THROW_MESSAGE(SafetensorsFile::open(path), FormatError, path, "header length 3752", "past the end");
  // Cut inside the length prefix.
  write_bytes(path, original.substr(0, 5));
  EXPECT_THROW_MESSAGE(SafetensorsFile::open(path), FormatError, path, "5 bytes", "shorter than");
}

TEST(SafetensorsErrors, EmptyBuffer) { EXPECT_PARSE_ERROR("", "0 bytes", "shorter than"); }

TEST(SafetensorsErrors, HeaderLengthPastTheEnd) {
  std::string bytes = raw_safetensors("{}", 0);
  bytes[0] = 3;  // claims 3 bytes of header, holds 2
  EXPECT_PARSE_ERROR(bytes, "header length 3", "past the end");
  std::string huge = raw_safetensors("{}", 0);
  for (int i = 0; i < 8; ++i) huge[i] = '\xff';  // 2^64 - 1: must not wrap around any addition
  EXPECT_PARSE_ERROR(huge, "header length 18446744073709551615", "past the end");
}

TEST(SafetensorsErrors, AbsurdHeaderLength) {
  // A sparse file larger than the 100 MB limit costs no disk space.
  TempDir dir;
  const std::string path = dir / "sparse.safetensors";
  const uint64_t header_length = 150'000'000;
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((header_length >> (8 * i)) & 0xff);
  write_bytes(path, prefix);
  ASSERT_EQ(::truncate(path.c_str(), 200'000'000), 0);
  EXPECT_THROW_MESSAGE(SafetensorsFile::open(path), FormatError, path, "header length 150000000", "absurd");
}

TEST(SafetensorsErrors, HeaderNotJson) {
  EXPECT_PARSE_ERROR(raw_safetensors("{not json", 0), "header is not valid JSON");
  // Bad UTF-8: rejected, and quoted in the message as an escape so the message itself stays UTF-8.
  EXPECT_PARSE_ERROR(raw_safetensors(std::string("{\"a\xff\":1}"), 0), "header is not valid JSON", "\\xff");
  EXPECT_PARSE_ERROR(raw_safetensors(std::string(8, '\0'), 0), "header is not valid JSON");
  EXPECT_PARSE_ERROR(raw_safetensors("[1, 2]", 0), "not an object", "array");
  EXPECT_PARSE_ERROR(raw_safetensors("\"text\"", 0), "not an object", "string");
}

TEST(SafetensorsErrors, DeepNestingStopsEarly) {
  // Nothing in a safetensors header nests deeper than 3; a million levels must not reach the stack.
  const size_t depth = 1'000'000;
  EXPECT_PARSE_ERROR(raw_safetensors(R"({"t":{"dtype":"F32","shape":)" + std::string(depth, '[') +
                                         std::string(depth, ']') + R"(,"data_offsets":[0,0]}})",
                                     0),
                     "nests deeper than 16 levels");
}

TEST(SafetensorsErrors, NamesInMessagesAreEscapedAndShortened) {
  // The name is "line<newline>break" followed by 10000 x: escaped, then cut.
  const std::string header = "{\"line\\nbreak" + std::string(10'000, 'x') +
                             R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})";
  try {
    SafetensorsFile::parse(in_memory(raw_safetensors(header, 8), kName));
    FAIL() << "expected a FormatError";
  } catch (const FormatError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("tensor \"line\\x0abreakxxx"), std::string::npos) << message;
    EXPECT_LT(message.size(), 400u);
  }
}

TEST(SafetensorsErrors, BadMetadata) {
  EXPECT_PARSE_ERROR(raw_safetensors(R"({"__metadata__":[1]})", 0), "__metadata__", "object");
  EXPECT_PARSE_ERROR(raw_safetensors(R"({"__metadata__":{"format":1}})", 0), "__metadata__ \"format\"", "string");
}

TEST(SafetensorsErrors, UnknownDtypeIsListed) {
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})"), 4),
                     "tensor \"t\"", "unknown dtype \"F33\"", "known: F64, F32");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})"), 4), "tensor \"t\"",
                     "\"dtype\" must be a string");
}

TEST(SafetensorsErrors, MissingOrMalformedFields) {
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor("[]"), 0), "tensor \"t\"", "must be an object");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"shape":[1],"data_offsets":[0,4]})"), 4), "tensor \"t\"",
                     "no \"dtype\"");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","data_offsets":[0,4]})"), 4), "tensor \"t\"",
                     "no \"shape\"");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[1]})"), 4), "tensor \"t\"",
                     "no \"data_offsets\"");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":4,"data_offsets":[0,4]})"), 4),
                     "tensor \"t\"", "\"shape\" must be an array");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"), 4),
                     "tensor \"t\"", "integers between 0 and 2^63-1");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[1.0],"data_offsets":[0,4]})"), 4),
                     "tensor \"t\"", "integers between 0 and 2^63-1");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), 4),
                     "tensor \"t\"", "must be [begin, end]");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,"4"]})"), 4),
                     "tensor \"t\"", "non-negative integers");
}

TEST(SafetensorsErrors, ShapeOverflow) {
  EXPECT_PARSE_ERROR(
      raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"), 4),
      "tensor \"t\"", "more elements than fit");
  EXPECT_PARSE_ERROR(
      raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})"), 4),
      "tensor \"t\"", "integers between 0 and 2^63-1");
  // numel fits in int64 but numel x 8 bytes does not.
  EXPECT_PARSE_ERROR(
      raw_safetensors(one_tensor(R"({"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})"), 8),
      "tensor \"t\"", "more than 2^64");
}

TEST(SafetensorsErrors, OffsetsMismatchingShape) {
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})"), 24),
                     "tensor \"t\"", "data_offsets [0, 20] hold 20 bytes but F32 [2, 3] needs 24");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), 8),
                     "tensor \"t\"", "begin is after end");
  EXPECT_PARSE_ERROR(raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), 7),
                     "tensor \"t\"", "end past the end of the file");
  EXPECT_PARSE_ERROR(
      raw_safetensors(one_tensor(R"({"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,0]})"), 8),
      "tensor \"t\"", "begin is after end");
}

TEST(SafetensorsErrors, OverlappingTensorsNameBoth) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_PARSE_ERROR(raw_safetensors(header, 12), "\"a\"", "\"b\"", "overlap");
  // Listed out of order in the header, and a zero-byte tensor inside another is harmless.
  const std::string shuffled = R"({"late":{"dtype":"U8","shape":[4],"data_offsets":[8,12]},)"
                               R"("nothing":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},)"
                               R"("early":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}})";
  EXPECT_PARSE_ERROR(raw_safetensors(shuffled, 12), "\"early\"", "\"late\"", "overlap");
  const std::string fine = R"({"nothing":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},)"
                           R"("early":{"dtype":"U8","shape":[10],"data_offsets":[0,10]}})";
  EXPECT_NO_THROW(SafetensorsFile::parse(in_memory(raw_safetensors(fine, 10))));
}

TEST(SafetensorsErrors, DuplicateNames) {
  const std::string header = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})";
  EXPECT_PARSE_ERROR(raw_safetensors(header, 2), "\"a\" twice");
}

TEST(SafetensorsErrors, ValidationHappensOnOpenFromDisk) {
  // The same checks apply to a real file; the error carries its path.
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  write_bytes(path, raw_safetensors(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), 4));
  EXPECT_THROW_MESSAGE(SafetensorsFile::open(path), FormatError, path, "tensor \"t\"", "needs 8");
}

}  // namespace
}  // namespace graft::io::test
