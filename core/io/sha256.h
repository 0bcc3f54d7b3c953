// SHA-256 (FIPS 180-4), written here so that patch fingerprints and checksums need no crypto
// library. Streaming: feed bytes in any number of pieces, then finish() once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace graft::io {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  void update(const void* data, size_t size);
  // The digest of everything fed so far. The object is spent afterwards (update/finish throw).
  Digest finish();

  // Lower-case hex, the form every graft file and message uses.
  static std::string hex(const Digest& digest);
  // One-shot helpers.
  static std::string hex_of(const void* data, size_t size);
  static std::string hex_of(const std::string& bytes) { return hex_of(bytes.data(), bytes.size()); }

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
  bool finished_ = false;
};

// SHA-256 of a whole file, read in pieces (no mapping): InputError naming the path when unreadable.
std::string sha256_file_hex(const std::string& path);

}  // namespace graft::io
