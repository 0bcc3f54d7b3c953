// libFuzzer target for the tokenizer. Each input is used three ways:
//  1. as a tokenizer.json, which must load or fail with a graft::Error, and once loaded must encode
//     and decode without failing otherwise;
//  2. as text for the two fixture tokenizers (loaded once); the byte-level one must give the text
//     back exactly from decode(encode(text)), since its mapping is reversible and its vocabulary
//     has all 256 byte symbols;
//  3. as a list of token ids for decode, which may only fail with InputError (id out of range).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"

namespace {

struct Fixtures {
  graft::Tokenizer metaspace = graft::Tokenizer::from_file(GRAFT_TEST_DATA "/tokenizers/metaspace_bpe/tokenizer.json");
  graft::Tokenizer bytelevel = graft::Tokenizer::from_file(GRAFT_TEST_DATA "/tokenizers/bytelevel_bpe/tokenizer.json");
};

const Fixtures& fixtures() {
  static const Fixtures f;
  return f;
}

void exercise_loaded(const graft::Tokenizer& tok, const std::string& text) {
  for (const char* sample : {"Hello world", "  <bos> x\n\n", "naïve 🙂 12345", ""}) {
    try {
      const auto ids = tok.encode(sample, true);
      tok.decode(ids, false);
      tok.decode(ids, true);
    } catch (const graft::Error&) {
      // e.g. an unk token missing from the vocabulary: reported, as HF does at encoding time
    }
  }
  try {
    tok.encode(text);
  } catch (const graft::Error&) {
  }
  for (int64_t id = 0; id < tok.vocab_size() && id < 64; ++id) {
    try {
      tok.decode({id});
      tok.id_to_token(id);
    } catch (const graft::InputError&) {
      // ids need not be dense
    }
  }
}

void check_round_trip(const graft::Tokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const graft::InputError&) {
    return;  // not UTF-8
  }
  const std::string back = tok.decode(ids);
  if (back != text) {
    std::fprintf(stderr, "byte-level round trip changed the text (%zu bytes -> %zu bytes)\n", text.size(), back.size());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);

  try {
    exercise_loaded(graft::Tokenizer::from_json_string(input, "fuzz.json"), input);
  } catch (const graft::Error&) {
  }

  const Fixtures& f = fixtures();
  check_round_trip(f.bytelevel, input);
  try {
    const auto ids = f.metaspace.encode(input, true);
    f.metaspace.decode(ids, true);
  } catch (const graft::InputError&) {
  }

  std::vector<int64_t> ids;
  for (size_t i = 0; i + 1 < size && ids.size() < 512; i += 2) ids.push_back((data[i] << 8 | data[i + 1]) % 1700);
  for (const graft::Tokenizer* tok : {&f.metaspace, &f.bytelevel}) {
    try {
      tok->decode(ids, false);
    } catch (const graft::InputError&) {
    }
  }
  return 0;
}
