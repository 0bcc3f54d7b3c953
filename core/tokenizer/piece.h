// The unit the encoding pipeline passes along: a piece of (normalized) text, or an added token.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace graft::tokenizer_detail {

struct Piece {
  std::string text;
  // Whether the piece begins at the start of the input, as HF's Metaspace prepend_scheme "first"
  // asks (NormalizedString::offsets_original().0 == 0): it then gets the "▁" that later pieces do
  // not get. HF decides this when it slices a piece out of a bigger one, from its alignments.
  bool at_origin = false;
  // How many leading bytes of `text` HF aligns with the first character of the piece's original
  // text. A slice starting inside this prefix begins where its parent began. Every transformation
  // here keeps alignments in order, so this length is all of the alignments we need.
  std::size_t origin_len = 0;
  // The added token this piece is (set by the added-vocabulary split), or -1. Later stages skip it.
  int64_t token_id = -1;

  bool is_token() const { return token_id >= 0; }
};

// A piece of the input that starts at input offset `offset`.
Piece make_input_piece(std::string_view text, std::size_t offset);

// Piece::slice of HF: bytes [begin, end) of `piece`, keeping track of origin_len.
Piece slice_piece(const Piece& piece, std::size_t begin, std::size_t end);

// Builds a transformed piece from an input piece, output chunk by output chunk. Each chunk says
// which input byte it is aligned with, as HF's alignments would; the origin prefix of the output
// is then the run of chunks aligned with the input's origin prefix.
class PieceBuilder {
 public:
  explicit PieceBuilder(const Piece& input) : input_at_origin_(input.at_origin), input_origin_len_(input.origin_len) {}
  void append(std::string_view chunk, std::size_t aligned_with_input_byte);
  // A transformation keeps the piece where it was in the input (HF keeps original_shift).
  Piece finish() { return Piece{std::move(out_), input_at_origin_, origin_len_, -1}; }

 private:
  bool input_at_origin_;
  std::size_t input_origin_len_;
  std::string out_;
  std::size_t origin_len_ = 0;
  bool in_origin_ = true;
};

// A run of a piece's text and whether a pattern matched it. A list of these covers the text.
struct Match {
  std::size_t begin;
  std::size_t end;
  bool is_match;
};

// What Split does with the matched delimiters (HF SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// HF NormalizedString::split: turns `matches` into sub-pieces of `piece` following `behavior` and
// appends the non-empty ones to `out` (HF's PreTokenizedString::split drops empty splits).
void split_piece(const Piece& piece, const std::vector<Match>& matches, SplitBehavior behavior,
                 std::vector<Piece>& out);

// HF's Pattern for a single char: every occurrence of `c` is a match, the rest are not.
void find_char_matches(std::string_view text, std::string_view c, std::vector<Match>& out);

// Literal (non-overlapping, leftmost) occurrences of `needle`, which must not be empty.
void find_literal_matches(std::string_view text, std::string_view needle, std::vector<Match>& out);

}  // namespace graft::tokenizer_detail
