#include "core/tokenizer/added_vocabulary.h"

#include <algorithm>

#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {
namespace {

// The code point that ends text[0, end); `end` > 0.
uint32_t code_point_before(std::string_view text, std::size_t end) {
  std::size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return decode_utf8_at(text, start);
}

// Start of the whitespace run that ends text[0, end) (HF: the match of \s*$).
std::size_t trailing_space_start(std::string_view text, std::size_t end) {
  while (end > 0) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (!is_whitespace(decode_utf8_at(text, start))) break;
    end = start;
  }
  return end;
}

// End of the whitespace run that starts at text[begin] (HF: the match of ^\s*).
std::size_t leading_space_end(std::string_view text, std::size_t begin) {
  while (begin < text.size() && is_whitespace(decode_utf8_at(text, begin))) {
    begin += utf8_sequence_length(static_cast<unsigned char>(text[begin]));
  }
  return begin;
}

AddedVocabulary::Token parse_token(const json& entry, const JsonWhere& where) {
  if (!entry.is_object()) where.fail("must be an object, got " + describe_json_type(entry));
  AddedVocabulary::Token token;
  token.content = require_string(entry, "content", where);
  // The declared id only has to be well-formed; see from_json for how ids are really assigned.
  if (const json* id = find_member(entry, "id")) expect_token_id(*id, where["id"]);
  token.single_word = optional_bool(entry, "single_word", false, where);
  token.lstrip = optional_bool(entry, "lstrip", false, where);
  token.rstrip = optional_bool(entry, "rstrip", false, where);
  token.special = optional_bool(entry, "special", false, where);
  token.normalized = optional_bool(entry, "normalized", !token.special, where);
  return token;
}

bool same_properties(const AddedVocabulary::Token& a, const AddedVocabulary::Token& b) {
  return a.content == b.content && a.single_word == b.single_word && a.lstrip == b.lstrip && a.rstrip == b.rstrip &&
         a.normalized == b.normalized && a.special == b.special;
}

}  // namespace

void TokenTrie::insert(std::string_view pattern, int64_t value) {
  if (pattern.empty()) return;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
  uint32_t node = 0;
  for (const char ch : pattern) {
    const auto byte = static_cast<unsigned char>(ch);
    auto& children = nodes_[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), byte,
                               [](const auto& child, unsigned char b) { return child.first < b; });
    if (it != children.end() && it->first == byte) {
      node = it->second;
    } else {
      const auto next = static_cast<uint32_t>(nodes_.size());
      children.insert(it, {byte, next});
      nodes_.emplace_back();
      node = next;
    }
  }
  nodes_[node].value = value;
}

std::size_t TokenTrie::longest_at(std::string_view text, std::size_t pos, int64_t& value) const {
  std::size_t best = 0;
  uint32_t node = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    const auto& children = nodes_[node].children;
    const auto it = std::lower_bound(children.begin(), children.end(), byte,
                                     [](const auto& child, unsigned char b) { return child.first < b; });
    if (it == children.end() || it->first != byte) break;
    node = it->second;
    if (nodes_[node].value >= 0) {
      best = i + 1 - pos;
      value = nodes_[node].value;
    }
  }
  return best;
}

AddedVocabulary AddedVocabulary::from_json(const json* list, const JsonWhere& where, const BpeModel& model,
                                           const Normalizer* normalizer) {
  AddedVocabulary vocab;
  vocab.id_limit_ = model.id_limit();
  if (list == nullptr || list->is_null()) return vocab;
  if (!list->is_array()) where.fail("must be an array, got " + describe_json_type(*list));
  // HF starts numbering new tokens at the vocabulary's entry count.
  auto next_id = static_cast<int64_t>(model.entry_count());
  for (std::size_t i = 0; i < list->size(); ++i) {
    vocab.add(parse_token((*list)[i], where.at(i)), model, normalizer, next_id);
  }
  vocab.build_tries();
  return vocab;
}

// HF AddedVocabulary::add_tokens, one token at a time.
void AddedVocabulary::add(Token token, const BpeModel& model, const Normalizer* normalizer, int64_t& next_id) {
  if (token.content.empty()) return;
  if (const auto known = by_content_.find(token.content); known != by_content_.end()) {
    const auto at = by_id_.find(known->second);
    if (at != by_id_.end() && same_properties(tokens_[at->second], token)) return;
  }
  std::optional<int64_t> id = token_to_id(token.content);
  if (!id) id = model.token_to_id(token.content);
  token.id = id ? *id : next_id++;
  token.surface = token.content;
  if (token.normalized && normalizer != nullptr) {
    Piece piece = make_input_piece(token.content, 0);
    normalizer->normalize(piece);
    token.surface = piece.text;
  }
  by_content_[token.content] = token.id;
  if (token.special) special_contents_.insert(token.content);
  id_limit_ = std::max(id_limit_, token.id + 1);
  if (const auto at = by_id_.find(token.id); at != by_id_.end()) {
    tokens_[at->second] = std::move(token);
  } else {
    by_id_.emplace(token.id, tokens_.size());
    tokens_.push_back(std::move(token));
  }
}

void AddedVocabulary::build_tries() {
  for (const Token& token : tokens_) {
    if (token.normalized) {
      normalized_trie_.insert(token.surface, token.id);
    } else {
      raw_trie_.insert(token.content, token.id);
    }
  }
}

// HF AddedVocabulary::find_matches: leftmost-longest matches, then the token's own conditions.
std::vector<AddedVocabulary::Split> AddedVocabulary::find_matches(std::string_view text, const TokenTrie& trie) const {
  std::vector<Split> splits;
  std::size_t start_offset = 0;
  for (std::size_t pos = 0; pos < text.size() && !trie.empty();) {
    int64_t id = -1;
    const std::size_t len = trie.may_start_with(static_cast<unsigned char>(text[pos])) ? trie.longest_at(text, pos, id)
                                                                                       : 0;
    if (len == 0) {
      ++pos;
      continue;
    }
    std::size_t start = pos;
    std::size_t stop = pos + len;
    pos = stop;  // matches do not overlap, even when one is then discarded
    const Token& token = tokens_[by_id_.at(id)];
    if (token.single_word) {
      const bool space_before = start == 0 || !is_word_char(code_point_before(text, start));
      const bool space_after = stop == text.size() || !is_word_char(decode_utf8_at(text, stop));
      if (!space_before || !space_after) continue;
    }
    if (token.lstrip) start = std::max(trailing_space_start(text, start), start_offset);
    if (token.rstrip) stop = leading_space_end(text, stop);
    if (start_offset < start) splits.push_back({start_offset, start, -1});
    splits.push_back({start, stop, id});
    start_offset = stop;
  }
  if (start_offset < text.size()) splits.push_back({start_offset, text.size(), -1});
  return splits;
}

std::vector<Piece> AddedVocabulary::extract_and_normalize(std::string_view text, const Normalizer* normalizer) const {
  std::vector<Piece> first_pass;
  for (const Split& s : find_matches(text, raw_trie_)) {
    if (s.end <= s.begin) continue;
    Piece piece = make_input_piece(text.substr(s.begin, s.end - s.begin), s.begin);
    piece.token_id = s.token_id;
    first_pass.push_back(std::move(piece));
  }
  std::vector<Piece> out;
  out.reserve(first_pass.size());
  for (Piece& piece : first_pass) {
    if (piece.is_token()) {
      out.push_back(std::move(piece));
      continue;
    }
    if (normalizer != nullptr) normalizer->normalize(piece);
    // HF slices the normalized piece even when no token is found in it, which matters for where
    // it starts (see Piece::at_origin).
    for (const Split& s : find_matches(piece.text, normalized_trie_)) {
      if (s.end <= s.begin) continue;
      Piece sub = slice_piece(piece, s.begin, s.end);
      sub.token_id = s.token_id;
      out.push_back(std::move(sub));
    }
  }
  return out;
}

std::optional<int64_t> AddedVocabulary::token_to_id(std::string_view content) const {
  const auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

const std::string* AddedVocabulary::id_to_token(int64_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second].surface;
}

}  // namespace graft::tokenizer_detail
