// tokenizer.json's added_tokens: matched in the input before anything else, with HF's semantics
// (leftmost-longest, single_word, lstrip, rstrip, and `normalized` tokens matched after the
// normalizer), and decoded without going through the model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/json_reader.h"
#include "core/tokenizer/normalizers.h"
#include "core/tokenizer/piece.h"

namespace graft::tokenizer_detail {

// A byte trie over token contents, answering "the longest token starting here".
class TokenTrie {
 public:
  void insert(std::string_view pattern, int64_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // Returns the length of the longest pattern starting at text[pos] (0 if none) and its value.
  std::size_t longest_at(std::string_view text, std::size_t pos, int64_t& value) const;
  bool may_start_with(unsigned char byte) const { return first_byte_[byte]; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, uint32_t>> children;  // sorted by byte
    int64_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_byte_[256] = {};
};

class AddedVocabulary {
 public:
  struct Token {
    std::string content;
    // What decoding shows and what `normalized` tokens are matched as: the normalizer's output for
    // the content when the token is normalized and the normalizer changes it (HF does the same).
    std::string surface;
    int64_t id = -1;
    bool single_word = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = true;
    bool special = false;
  };

  // Reads tokenizer.json's "added_tokens" (null or absent: none). Ids are assigned as HF does it:
  // the model's id when the content is in its vocabulary, otherwise the next id after the
  // vocabulary; the "id" written in the file is not what decides.
  static AddedVocabulary from_json(const json* list, const JsonWhere& where, const BpeModel& model,
                                   const Normalizer* normalizer);

  // Splits the input around added tokens (HF AddedVocabulary::extract_and_normalize): first the
  // non-normalized tokens in the raw text, then the normalizer runs on the remaining pieces and the
  // normalized tokens are found in its output. Empty pieces are dropped.
  std::vector<Piece> extract_and_normalize(std::string_view text, const Normalizer* normalizer) const;

  std::optional<int64_t> token_to_id(std::string_view content) const;
  // The surface form of an added token id, or nullptr.
  const std::string* id_to_token(int64_t id) const;
  bool is_special(std::string_view token) const { return special_contents_.count(std::string(token)) != 0; }
  int64_t id_limit() const { return id_limit_; }
  const std::vector<Token>& tokens() const { return tokens_; }

 private:
  struct Split {
    std::size_t begin;
    std::size_t end;
    int64_t token_id;  // -1 for text between tokens
  };

  void add(Token token, const BpeModel& model, const Normalizer* normalizer, int64_t& next_id);
  void build_tries();
  std::vector<Split> find_matches(std::string_view text, const TokenTrie& trie) const;

  std::vector<Token> tokens_;                       // one per id, in id order of addition
  std::unordered_map<int64_t, std::size_t> by_id_;  // id -> index into tokens_
  std::unordered_map<std::string, int64_t> by_content_;
  std::unordered_set<std::string> special_contents_;
  TokenTrie raw_trie_;         // tokens with normalized == false, matched in the raw input
  TokenTrie normalized_trie_;  // tokens with normalized == true, matched after the normalizer
  int64_t id_limit_ = 0;
};

}  // namespace graft::tokenizer_detail
