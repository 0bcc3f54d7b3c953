// HF decoders: ByteLevel, Metaspace, ByteFallback, Fuse, Replace, Strip, BPEDecoder and Sequence.
// Each one maps the list of token strings to a new list, as HF's decode_chain does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/tokenizer/json_reader.h"

namespace graft::tokenizer_detail {

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual std::vector<std::string> decode_chain(std::vector<std::string> tokens) const = 0;
};

// nullptr for a JSON null (HF then joins the tokens with spaces).
std::unique_ptr<Decoder> parse_decoder(const json& config, const JsonWhere& where, int depth = 0);

}  // namespace graft::tokenizer_detail
