// The parts one at a time, on small hand-written tokenizers. Expected values were produced by HF
// tokenizers 0.23.3 on the same tokenizer.json (see tests/python/test_tokenizer_vs_hf.py for the
// large differential test).
#include <gtest/gtest.h>

#include "core/tokenizer/split_patterns.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace graft::test {
namespace {

using nlohmann::json;
using Ids = std::vector<int64_t>;
namespace detail = graft::tokenizer_detail;

// vocab: <unk>=0 a=1 b=2 c=3 ab=4 bc=5 abc=6 <0x78>=7 <0x79>=8; no pre-tokenizer or decoder.
json tiny_bpe(const json& merges) {
  return json{
      {"version", "1.0"},
      {"added_tokens", json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder", nullptr},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab",
         {{"<unk>", 0}, {"a", 1}, {"b", 2}, {"c", 3}, {"ab", 4}, {"bc", 5}, {"abc", 6}, {"<0x78>", 7}, {"<0x79>", 8}}},
        {"merges", merges}}}};
}

Tokenizer load(const json& config) { return Tokenizer::from_json_string(config.dump(), "unit.json"); }

TEST(TokenizerBpe, MergeRankDecidesOverlaps) {
  const Tokenizer bc_first = load(tiny_bpe({"b c", "a b", "a bc"}));
  EXPECT_EQ(bc_first.encode("abc"), (Ids{6}));
  EXPECT_EQ(bc_first.encode("abcabc"), (Ids{6, 6}));
  EXPECT_EQ(bc_first.encode("bcab"), (Ids{5, 4}));
  const Tokenizer ab_first = load(
      tiny_bpe(json::array({json::array({"a", "b"}), json::array({"b", "c"}), json::array({"a", "bc"})})));  // pairs
  EXPECT_EQ(ab_first.encode("abc"), (Ids{4, 3}));
  EXPECT_EQ(ab_first.encode("abcabc"), (Ids{4, 3, 4, 3}));
  EXPECT_EQ(ab_first.encode("cab"), (Ids{3, 4}));
  EXPECT_EQ(ab_first.decode({4, 3}), "ab c");  // no decoder: HF joins tokens with spaces
}

TEST(TokenizerBpe, LongWordsMergeLikeShortOnes) {
  const Tokenizer bc_first = load(tiny_bpe({"b c", "a b", "a bc"}));
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "abc";
  EXPECT_EQ(bc_first.encode(text), Ids(20000, 6));
}

TEST(TokenizerBpe, UnknownCharacters) {
  json fuse = tiny_bpe({"a b", "b c"});
  fuse["model"]["fuse_unk"] = true;
  EXPECT_EQ(load(fuse).encode("azzb"), (Ids{1, 0, 2}));
  EXPECT_EQ(load(fuse).encode("zaz"), (Ids{0, 1, 0}));
  EXPECT_EQ(load(tiny_bpe({"a b", "b c"})).encode("azzb"), (Ids{1, 0, 0, 2}));
  json no_unk = tiny_bpe({"a b", "b c"});
  no_unk["model"]["unk_token"] = nullptr;
  EXPECT_EQ(load(no_unk).encode("azb"), (Ids{4}));  // the unknown character vanishes, a and b merge
}

TEST(TokenizerBpe, ByteFallback) {
  json fallback = tiny_bpe({"a b", "b c"});
  fallback["model"]["byte_fallback"] = true;
  EXPECT_EQ(load(fallback).encode("axyb"), (Ids{1, 7, 8, 2}));
  EXPECT_EQ(load(fallback).encode("xz"), (Ids{7, 0}));
  EXPECT_EQ(load(fallback).encode("zx"), (Ids{7, 0}));  // HF adds the byte before the pending unk
}

TEST(TokenizerBpe, IgnoreMerges) {
  json config = tiny_bpe({"a b", "ab c"});
  config["model"]["ignore_merges"] = true;
  config["model"]["vocab"]["bca"] = 9;
  EXPECT_EQ(load(config).encode("bca"), (Ids{9}));  // a whole word in the vocabulary is taken as is
  EXPECT_EQ(load(config).encode("bcab"), (Ids{2, 3, 4}));
}

TEST(TokenizerBpe, SubwordPrefixAndWordSuffix) {
  const json config = json::parse(R"({"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
      "post_processor": null, "decoder": {"type": "BPEDecoder", "suffix": "</w>"},
      "model": {"type": "BPE", "unk_token": "<unk>", "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>",
                "vocab": {"<unk>": 0, "a": 1, "##b": 2, "##c</w>": 3, "a##b": 4, "ab": 5, "ab##c</w>": 6,
                          "abc</w>": 7, "a</w>": 8},
                "merges": [["a", "##b"], ["ab", "##c</w>"]]}})");
  const Tokenizer tok = load(config);
  EXPECT_EQ(tok.encode("abc"), (Ids{7}));
  EXPECT_EQ(tok.encode("a"), (Ids{8}));
  EXPECT_EQ(tok.encode("ab"), (Ids{1, 0}));
  EXPECT_EQ(tok.decode({7}), "abc");
}

// ---------------------------------------------------------------------------------------------

json bytelevel_with_added_tokens() {
  json tok = read_json(data_path("tokenizers/bytelevel_bpe/tokenizer.json"));
  const auto token = [](const char* content, bool lstrip, bool rstrip, bool single_word, bool normalized,
                        bool special) {
    return json{{"id", 0},          {"content", content},       {"single_word", single_word}, {"lstrip", lstrip},
                {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}};
  };
  tok["added_tokens"].push_back(token("<|tool|>", true, false, false, false, true));
  tok["added_tokens"].push_back(token("[MASK]", false, true, false, false, true));
  tok["added_tokens"].push_back(token("cat", false, false, true, true, false));
  tok["added_tokens"].push_back(token("<|bos|>x", false, false, false, false, false));
  return tok;
}

TEST(TokenizerAddedTokens, HfMatchingRules) {
  const Tokenizer tok = load(bytelevel_with_added_tokens());
  EXPECT_EQ(tok.vocab_size(), 1404);  // new tokens are numbered after the vocabulary
  EXPECT_EQ(tok.token_to_id("<|tool|>"), 1400);
  EXPECT_EQ(tok.encode("a  <|tool|>b"), (Ids{67, 1400, 68}));  // lstrip swallows the spaces before
  EXPECT_EQ(tok.encode("[MASK]   c"), (Ids{1401, 69}));        // rstrip swallows the spaces after
  EXPECT_EQ(tok.encode("cat concat cat."), (Ids{1402, 275, 291, 69, 380, 223, 1402, 16}));  // single_word
  EXPECT_EQ(tok.encode("<|bos|>x<|bos|>y"), (Ids{1403, 2, 91}));                            // longest match
  EXPECT_EQ(tok.decode({67, 1400, 68}), "a<|tool|>b");
  EXPECT_EQ(tok.decode({67, 1400, 68}, true), "ab");
  EXPECT_EQ(tok.decode({1403, 2, 91}, true), "<|bos|>xy");  // a non-special added token stays
}

TEST(TokenizerDecode, InvalidUtf8BecomesReplacementCharacters) {
  const Tokenizer meta = Tokenizer::from_file(data_path("tokenizers/metaspace_bpe/tokenizer.json"));
  const auto byte = [&](const char* name) { return meta.token_to_id(name).value(); };
  // ByteFallback: a run of byte tokens that is not UTF-8 gives one U+FFFD per byte.
  EXPECT_EQ(meta.decode({byte("<0xF0>"), byte("<0x9F>")}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(meta.decode({byte("<0xF0>"), byte("<0x9F>"), byte("<0x99>"), byte("<0x82>")}), "🙂");
  // ByteLevel: the bytes of all tokens are decoded together, lossily (Rust's from_utf8_lossy).
  const Tokenizer gpt2 = Tokenizer::from_file(data_path("tokenizers/bytelevel_bpe/tokenizer.json"));
  EXPECT_EQ(gpt2.decode({165, 248}), "\xEF\xBF\xBD");
  EXPECT_EQ(gpt2.decode({165}), "\xEF\xBF\xBD");
}

// ---------------------------------------------------------------------------------------------
// Unicode data and helpers

TEST(TokenizerUnicode, CategoriesAreUnicode16LikeOniguruma) {
  EXPECT_TRUE(detail::is_letter(U'a'));
  EXPECT_TRUE(detail::is_letter(0x1C89));    // CYRILLIC CAPITAL LETTER TJE, new in Unicode 16
  EXPECT_FALSE(detail::is_letter(0x10940));  // Sidetic, Unicode 17: unassigned for HF
  EXPECT_FALSE(detail::is_letter(0x0301));   // a combining mark is not \p{L}
  EXPECT_TRUE(detail::is_number(0x00B2));    // SUPERSCRIPT TWO is \p{N} (No)
  EXPECT_TRUE(detail::is_number(0x2162));    // ROMAN NUMERAL THREE (Nl)
  EXPECT_TRUE(detail::is_whitespace(0x3000));
  EXPECT_TRUE(detail::is_whitespace(0x0085));
  EXPECT_FALSE(detail::is_whitespace(0x200B));  // ZERO WIDTH SPACE is not White_Space
  EXPECT_FALSE(detail::is_whitespace(0x001C));  // Python's isspace() says yes; Oniguruma says no
  EXPECT_TRUE(detail::is_word_char(0x24B6));    // CIRCLED LATIN CAPITAL LETTER A: Other_Alphabetic
  EXPECT_TRUE(detail::is_word_char(U'_'));
  EXPECT_FALSE(detail::is_word_char(U'-'));
  EXPECT_EQ(detail::unicode_flags(0x110000), 0);
}

TEST(TokenizerUnicode, LossyUtf8IsRustsFromUtf8Lossy) {
  EXPECT_EQ(detail::utf8_lossy("ok"), "ok");
  EXPECT_EQ(detail::utf8_lossy("\xE2\x82"), "\xEF\xBF\xBD");              // one incomplete sequence
  EXPECT_EQ(detail::utf8_lossy("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: two
  EXPECT_EQ(detail::utf8_lossy("\xF0\x90\x80"
                               "A"),
            "\xEF\xBF\xBD"
            "A");
  EXPECT_EQ(detail::utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(detail::find_invalid_utf8("h\xC3\xA9llo"), std::string::npos);
  EXPECT_EQ(detail::find_invalid_utf8("h\xC3"), 1u);
}

std::vector<uint32_t> code_points(const std::vector<detail::AlignedCodePoint>& aligned) {
  std::vector<uint32_t> out;
  for (const auto& a : aligned) out.push_back(a.cp);
  return out;
}

TEST(TokenizerUnicode, NormalizationWithHfsUnicode9Tables) {
  using V = std::vector<uint32_t>;
  EXPECT_EQ(code_points(detail::normalize_nfc({U'e', 0x0301})), (V{0x00E9}));
  EXPECT_EQ(code_points(detail::normalize_nfd({0x1EA5})), (V{U'a', 0x0302, 0x0301}));
  EXPECT_EQ(code_points(detail::normalize_nfc({U'a', 0x0323, 0x0301})), (V{0x1EA1, 0x0301}));  // reordered, composed
  EXPECT_EQ(code_points(detail::normalize_nfc({0x1100, 0x1161, 0x11A8})), (V{0xAC01}));        // Hangul LVT
  EXPECT_EQ(code_points(detail::normalize_nfc({0x0915, 0x093C})), (V{0x0915, 0x093C}));        // composition exclusion
  EXPECT_EQ(code_points(detail::normalize_nfc({0x11935, 0x11930})), (V{0x11935, 0x11930}));    // Unicode 13: not in HF
}

TEST(TokenizerSplitPatterns, RecognisesOnlyTheKnownRegexes) {
  EXPECT_EQ(detail::recognize_pattern(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"),
            detail::KnownPattern::kGpt2);
  EXPECT_EQ(detail::recognize_pattern(R"(\w+)"), std::nullopt);
}

std::vector<std::string> pieces(detail::KnownPattern pattern, const std::string& text) {
  std::vector<detail::Match> matches;
  detail::find_pattern_matches(pattern, text, matches);
  std::vector<std::string> out;
  for (const auto& m : matches) out.push_back(text.substr(m.begin, m.end - m.begin));
  return out;
}

TEST(TokenizerSplitPatterns, Gpt2AndLlama3Splits) {
  using S = std::vector<std::string>;
  EXPECT_EQ(pieces(detail::KnownPattern::kGpt2, "I'm  here 123 ok!!\n"),
            (S{"I", "'m", " ", " here", " 123", " ok", "!!", "\n"}));
  EXPECT_EQ(pieces(detail::KnownPattern::kGpt2, "a   b"), (S{"a", "  ", " b"}));
  EXPECT_EQ(pieces(detail::KnownPattern::kLlama3, "I'M 12345\tx\r\n\n  y"),
            (S{"I", "'M", " ", "123", "45", "\tx", "\r\n\n", " ", " y"}));
  EXPECT_EQ(pieces(detail::KnownPattern::kLlama3, "'ſt"), (S{"'ſ", "t"}));  // Unicode case folding
  EXPECT_EQ(pieces(detail::KnownPattern::kQwen2, "12..\n"), (S{"1", "2", "..\n"}));
}

}  // namespace
}  // namespace graft::test
