#include "core/tokenizer/piece.h"

#include <algorithm>

#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {

Piece make_input_piece(std::string_view text, std::size_t offset) {
  Piece piece;
  piece.text = std::string(text);
  piece.at_origin = offset == 0;
  // HF aligns every byte of a character with the character's whole range, so the bytes aligned
  // with the piece's first character are those of that character.
  if (!text.empty()) piece.origin_len = utf8_sequence_length(static_cast<unsigned char>(text[0]));
  return piece;
}

Piece slice_piece(const Piece& piece, std::size_t begin, std::size_t end) {
  Piece out;
  out.text = piece.text.substr(begin, end - begin);
  // A slice that starts inside the origin prefix starts where the parent started. For any other
  // slice the prefix is unknown, and unneeded: it can no longer be at the input's start.
  const bool starts_with_parent = begin < piece.origin_len;
  out.at_origin = piece.at_origin && starts_with_parent;
  out.origin_len = starts_with_parent ? std::min(piece.origin_len, end) - begin : 0;
  return out;
}

void PieceBuilder::append(std::string_view chunk, std::size_t aligned_with_input_byte) {
  if (in_origin_ && aligned_with_input_byte < input_origin_len_) {
    origin_len_ += chunk.size();
  } else {
    in_origin_ = false;
  }
  out_.append(chunk);
}

namespace {

struct Span {
  std::size_t begin;
  std::size_t end;
  bool remove;
};

// The fold of each HF behavior over the matches; see NormalizedString::split.
std::vector<Span> spans_for(const std::vector<Match>& matches, SplitBehavior behavior) {
  std::vector<Span> spans;
  spans.reserve(matches.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Match& m : matches) spans.push_back({m.begin, m.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const Match& m : matches) spans.push_back({m.begin, m.end, m.is_match});
      break;
    case SplitBehavior::kContiguous:
      for (const Match& m : matches) {
        if (m.is_match == previous_match && !spans.empty()) {
          spans.back().end = m.end;
        } else {
          spans.push_back({m.begin, m.end, false});
        }
        previous_match = m.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Match& m : matches) {
        if (m.is_match && !previous_match && !spans.empty()) {
          spans.back().end = m.end;
        } else {
          spans.push_back({m.begin, m.end, false});
        }
        previous_match = m.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous_match && !spans.empty()) {
          spans.back().begin = it->begin;
        } else {
          spans.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(spans.begin(), spans.end());
      break;
  }
  return spans;
}

}  // namespace

void split_piece(const Piece& piece, const std::vector<Match>& matches, SplitBehavior behavior,
                 std::vector<Piece>& out) {
  for (const Span& span : spans_for(matches, behavior)) {
    if (!span.remove && span.end > span.begin) out.push_back(slice_piece(piece, span.begin, span.end));
  }
}

void find_char_matches(std::string_view text, std::string_view c, std::vector<Match>& out) {
  find_literal_matches(text, c, out);
}

void find_literal_matches(std::string_view text, std::string_view needle, std::vector<Match>& out) {
  out.clear();
  std::size_t previous = 0;
  std::size_t pos = text.find(needle);
  while (pos != std::string_view::npos) {
    if (pos > previous) out.push_back({previous, pos, false});
    out.push_back({pos, pos + needle.size(), true});
    previous = pos + needle.size();
    pos = text.find(needle, previous);
  }
  if (previous < text.size()) out.push_back({previous, text.size(), false});
}

}  // namespace graft::tokenizer_detail
