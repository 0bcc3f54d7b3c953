// Shared by the core/io tests: temporary directories, raw file bytes, hand-made safetensors files,
// and an assertion on an exception's type and message.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "core/error.h"
#include "core/io/safetensors.h"

namespace graft::io::test {

namespace fs = std::filesystem;

inline std::string fixture(const std::string& relative) { return std::string(GRAFT_TEST_DATA) + "/" + relative; }

// A fresh directory under $TMPDIR, removed with its contents at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "graft-io-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  // Everything in the directory, for "nothing was left behind" checks.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// A safetensors file from a header written by hand: 8-byte length, the header, `data_bytes` bytes
// counting 0, 1, 2, ... so that each tensor's first byte tells where it starts.
inline std::string raw_safetensors(const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  const uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  bytes += header;
  for (size_t i = 0; i < data_bytes; ++i) bytes += static_cast<char>(i & 0xff);
  return bytes;
}

inline std::shared_ptr<MappedFile> in_memory(const std::string& bytes, const std::string& name = "mem.safetensors") {
  std::vector<std::byte> buffer(bytes.size());
  if (!bytes.empty()) std::memcpy(buffer.data(), bytes.data(), bytes.size());
  return MappedFile::from_bytes(std::move(buffer), name);
}

// CRC-32 (the zlib polynomial), to compare tensor bytes with fixture_manifest.tsv.
inline uint32_t crc32(const std::byte* data, size_t size) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= std::to_integer<uint32_t>(data[i]);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

}  // namespace graft::io::test

// Runs `statement`, requires it to throw exactly `ExceptionType` (not a subclass, not a parent), and
// requires the message to contain each of the given fragments.
#define EXPECT_THROW_MESSAGE(statement, ExceptionType, ...)                                  \
  do {                                                                                       \
    try {                                                                                    \
      statement;                                                                             \
      ADD_FAILURE() << "expected " #ExceptionType " from: " #statement;                      \
    } catch (const std::exception& e) {                                                      \
      EXPECT_EQ(typeid(e), typeid(ExceptionType))                                            \
          << "threw " << typeid(e).name() << " instead of " #ExceptionType ": " << e.what(); \
      for (const std::string& fragment : std::vector<std::string>{__VA_ARGS__})              \
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)                   \
            << "message lacks \"" << fragment << "\": " << e.what();                         \
    }                                                                                        \
  } while (0)
