// graft::Tokenizer: a reader of HuggingFace tokenizer.json files for BPE models that encodes and
// decodes exactly as HF `tokenizers` (0.23) does: SentencePiece-style Metaspace BPE with byte
// fallback (Gemma, Llama 2) and byte-level BPE (GPT-2, Llama 3, Qwen 2), with added tokens,
// normalizers (NFC, NFD, Prepend, Replace, Strip), post-processor templates (BOS/EOS) and the
// matching decoders. Anything else in a tokenizer.json is reported as unsupported, by name.
//
// Errors are graft::InputError (bad argument: a missing file, an id out of range, text that is not
// UTF-8) or graft::FormatError (a file that is not what it should be), with the file and key named.
// A Tokenizer is cheap to copy (the copies share one immutable state) and safe to use from several
// threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace graft {

class Tokenizer {
 public:
  // tokenizer.json alone: special tokens come only from its post_processor.
  static Tokenizer from_file(const std::string& tokenizer_json_path);
  // A model directory: tokenizer.json, plus tokenizer_config.json (add_bos_token, add_eos_token,
  // bos_token, eos_token, pad_token and their *_id forms) and config.json (bos/eos/pad_token_id)
  // when present. When tokenizer_config.json sets add_bos_token or add_eos_token, those decide what
  // encode(text, true) adds, as in transformers; otherwise the post_processor does.
  static Tokenizer from_model_dir(const std::string& dir);
  // The text of a tokenizer.json; `source_name` stands for the file in error messages.
  static Tokenizer from_json_string(const std::string& json, const std::string& source_name);

  // Token ids of `text` (UTF-8). With add_special_tokens, BOS/EOS are added as configured (see
  // from_model_dir); without, the ids are HF's encode(text, add_special_tokens=False).ids.
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // HF's decode(ids, skip_special_tokens): invalid UTF-8 from byte tokens becomes U+FFFD.
  // Throws InputError for an id that has no token.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false) const;

  std::optional<int64_t> token_to_id(std::string_view token) const;
  // The token's string as stored (byte-level tokens show their mapped form, e.g. "Ġthe").
  // Throws InputError for an id out of range.
  std::string id_to_token(int64_t id) const;
  // One past the largest id, added tokens included: the rows an embedding matrix needs.
  int64_t vocab_size() const;

  std::optional<int64_t> bos_id() const;
  std::optional<int64_t> eos_id() const;
  std::optional<int64_t> pad_id() const;
  // Whether encode(text, true) starts with a special token (BOS, or CLS for BERT-like processors).
  bool adds_bos() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  static std::shared_ptr<Impl> with_model_config(std::shared_ptr<Impl> impl, const std::string& dir);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace graft
