// HF normalizers: NFC, NFD, Prepend, Replace (literal pattern), Strip and Sequence.
#pragma once

#include <memory>

#include "core/tokenizer/json_reader.h"
#include "core/tokenizer/piece.h"

namespace graft::tokenizer_detail {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `piece` in place; the added-vocabulary split calls this once per piece of the input.
  virtual void normalize(Piece& piece) const = 0;
};

// nullptr for a JSON null. Unknown types are a FormatError naming the type and the supported ones.
std::unique_ptr<Normalizer> parse_normalizer(const json& config, const JsonWhere& where, int depth = 0);

}  // namespace graft::tokenizer_detail
