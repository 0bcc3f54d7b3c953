// The BPE model of HF tokenizers: vocabulary, ranked merges, unk / byte fallback, and a word cache.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/json_reader.h"

namespace graft::tokenizer_detail {

class BpeModel {
 public:
  // Reads tokenizer.json's "model" object; `where` names it for errors.
  static BpeModel from_json(const json& model, const JsonWhere& where);

  BpeModel(BpeModel&&) noexcept;
  BpeModel& operator=(BpeModel&&) noexcept;
  ~BpeModel();

  // Appends the ids of one pre-tokenized word. Throws FormatError if the word needs the unk token
  // and that token is not in the vocabulary (HF fails the same way, at encoding time).
  void tokenize(std::string_view word, std::vector<int64_t>& ids) const;

  std::optional<int64_t> token_to_id(std::string_view token) const;
  // nullptr for an id with no token.
  const std::string* id_to_token(int64_t id) const;
  // Number of vocabulary entries (HF's get_vocab_size), and the largest id + 1.
  std::size_t entry_count() const { return vocab_.size(); }
  int64_t id_limit() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  struct Merge {
    uint32_t rank;
    uint32_t new_id;
  };
  // A symbol of the word being merged: a doubly linked list over a vector, as in HF's Word.
  struct Symbol {
    uint32_t id;
    int32_t prev;
    int32_t next;
    uint32_t byte_len;  // 0 once merged into its left neighbour
  };
  struct WordCache;

  BpeModel();
  void merge_word(std::string_view word, std::vector<uint32_t>& out) const;
  void split_into_symbols(std::string_view word, std::vector<Symbol>& symbols) const;
  void apply_merges(std::vector<Symbol>& symbols) const;
  uint32_t unk_id() const;

  std::unordered_map<std::string, uint32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::unordered_map<uint64_t, Merge> merges_;  // key: (left id << 32) | right id
  std::optional<std::string> unk_token_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  uint32_t byte_ids_[256] = {};  // id of "<0xNN>" per byte, valid where has_byte_id_
  bool has_byte_id_[256] = {};
  std::string source_;  // for the error about a missing unk token
  std::unique_ptr<WordCache> cache_;
};

}  // namespace graft::tokenizer_detail
