#include "core/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/tokenizer/added_vocabulary.h"
#include "core/tokenizer/bpe_model.h"
#include "core/tokenizer/decoders.h"
#include "core/tokenizer/json_reader.h"
#include "core/tokenizer/normalizers.h"
#include "core/tokenizer/post_processors.h"
#include "core/tokenizer/pre_tokenizers.h"
#include "core/tokenizer/unicode.h"

namespace graft {

using tokenizer_detail::AddedVocabulary;
using tokenizer_detail::BpeModel;
using tokenizer_detail::describe_json_type;
using tokenizer_detail::expect_string;
using tokenizer_detail::expect_token_id;
using tokenizer_detail::find_member;
using tokenizer_detail::json;
using tokenizer_detail::JsonWhere;
using tokenizer_detail::optional_bool;
using tokenizer_detail::optional_int;
using tokenizer_detail::optional_string;
using tokenizer_detail::Piece;
using tokenizer_detail::quote;
using tokenizer_detail::require_member;
using tokenizer_detail::require_string;
using tokenizer_detail::SpecialTokenFrame;

namespace {

// tokenizer.json's "truncation" for a single sequence (HF TruncationParams).
struct Truncation {
  std::size_t max_length = 0;
  bool from_left = false;
};

// tokenizer.json's "padding" for a single sequence (HF PaddingParams).
struct Padding {
  std::optional<std::size_t> fixed_length;  // nullopt: BatchLongest, a no-op for one sequence
  std::size_t multiple_of = 0;
  bool on_left = false;
  int64_t pad_id = 0;
};

std::optional<Truncation> parse_truncation(const json* config, const JsonWhere& where) {
  if (config == nullptr || config->is_null()) return std::nullopt;
  if (!config->is_object()) where.fail("must be an object or null, got " + describe_json_type(*config));
  Truncation t;
  t.max_length = static_cast<std::size_t>(
      expect_token_id(require_member(*config, "max_length", where), where["max_length"]));
  const auto direction = optional_string(*config, "direction", where).value_or("Right");
  if (direction != "Right" && direction != "Left") where["direction"].fail("must be \"Right\" or \"Left\"");
  t.from_left = direction == "Left";
  return t;
}

std::optional<Padding> parse_padding(const json* config, const JsonWhere& where) {
  if (config == nullptr || config->is_null()) return std::nullopt;
  if (!config->is_object()) where.fail("must be an object or null, got " + describe_json_type(*config));
  Padding p;
  if (const json* strategy = find_member(*config, "strategy"); strategy != nullptr && strategy->is_object()) {
    const json* fixed = find_member(*strategy, "Fixed");
    if (fixed == nullptr) where["strategy"].fail("must be \"BatchLongest\" or {\"Fixed\": n}");
    p.fixed_length = static_cast<std::size_t>(expect_token_id(*fixed, where["strategy"]["Fixed"]));
  }
  p.multiple_of = static_cast<std::size_t>(optional_int(*config, "pad_to_multiple_of", where).value_or(0));
  // A padding length is a model's context size; refusing absurd ones keeps encode from trying to
  // allocate gigabytes for a corrupt file.
  constexpr std::size_t kMaxPadding = std::size_t{1} << 20;
  if (p.fixed_length.value_or(0) > kMaxPadding || p.multiple_of > kMaxPadding) {
    where.fail("pads to more than " + std::to_string(kMaxPadding) + " tokens");
  }
  p.on_left = optional_string(*config, "direction", where).value_or("Right") == "Left";
  p.pad_id = optional_int(*config, "pad_id", where).value_or(0);
  return p;
}

std::string read_file(const std::string& path, const std::string& label) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw InputError(label + ": file not found");
  if (std::filesystem::is_directory(path, ec)) throw InputError(label + ": is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(label + ": cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(label + ": cannot be read");
  return text.str();
}

std::string file_label(const std::string& path) {
  return std::filesystem::path(path).filename().string() + " (" + path + ")";
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<tokenizer_detail::Normalizer> normalizer;
  std::unique_ptr<tokenizer_detail::PreTokenizer> pre_tokenizer;
  BpeModel model;
  AddedVocabulary added;
  std::unique_ptr<tokenizer_detail::Decoder> decoder;
  SpecialTokenFrame frame;  // what add_special_tokens adds
  std::optional<Truncation> truncation;
  std::optional<Padding> padding;
  std::optional<int64_t> bos;
  std::optional<int64_t> eos;
  std::optional<int64_t> pad;

  explicit Impl(BpeModel m) : model(std::move(m)) {}

  static std::shared_ptr<Impl> parse(const std::string& text, const std::string& source);
  static std::shared_ptr<Impl> load(const std::string& path);

  int64_t vocab_size() const { return std::max(model.id_limit(), added.id_limit()); }

  std::optional<int64_t> token_to_id(std::string_view token) const {
    if (auto id = added.token_to_id(token)) return id;
    return model.token_to_id(token);
  }

  // The token string of `id` (HF simple_id_to_token, then the model), or nullptr.
  const std::string* token_of(int64_t id) const {
    if (const std::string* t = added.id_to_token(id)) return t;
    return model.id_to_token(id);
  }

  const std::string& require_token(int64_t id, const char* context) const {
    const std::string* token = (id >= 0 && id < vocab_size()) ? token_of(id) : nullptr;
    if (token == nullptr) {
      throw InputError(std::string(context) + ": id " + std::to_string(id) + " is not a token of " + source +
                       " (vocabulary size " + std::to_string(vocab_size()) + ")");
    }
    return *token;
  }
};

std::shared_ptr<Tokenizer::Impl> Tokenizer::Impl::parse(const std::string& text, const std::string& source) {
  const json root = tokenizer_detail::parse_json_text(text, source);
  const JsonWhere where(source);
  if (!root.is_object()) where.fail("must hold a JSON object, got " + describe_json_type(root));
  if (const auto version = optional_string(root, "version", where); version && *version != "1.0") {
    where["version"].fail("is " + quote(*version) + "; only \"1.0\" is known");
  }
  static const json kNull;
  const auto member = [&](const char* key) -> const json& {
    const json* value = find_member(root, key);
    return value == nullptr ? kNull : *value;
  };
  auto impl = std::make_shared<Impl>(BpeModel::from_json(require_member(root, "model", where), where["model"]));
  impl->source = source;
  impl->normalizer = tokenizer_detail::parse_normalizer(member("normalizer"), where["normalizer"]);
  impl->pre_tokenizer = tokenizer_detail::parse_pre_tokenizer(member("pre_tokenizer"), where["pre_tokenizer"]);
  impl->decoder = tokenizer_detail::parse_decoder(member("decoder"), where["decoder"]);
  impl->frame = tokenizer_detail::parse_post_processor(member("post_processor"), where["post_processor"]);
  impl->added = AddedVocabulary::from_json(find_member(root, "added_tokens"), where["added_tokens"], impl->model,
                                           impl->normalizer.get());
  impl->truncation = parse_truncation(find_member(root, "truncation"), where["truncation"]);
  impl->padding = parse_padding(find_member(root, "padding"), where["padding"]);

  // Without a tokenizer_config.json, the template is the only word on BOS/EOS.
  if (impl->frame.prefix.size() == 1) impl->bos = impl->frame.prefix[0];
  if (impl->frame.suffix.size() == 1) impl->eos = impl->frame.suffix[0];
  if (impl->padding) impl->pad = impl->padding->pad_id;
  const auto check_id = [&](int64_t id, const char* what) {
    if (id >= impl->vocab_size()) {
      where.fail(std::string(what) + " uses the id " + std::to_string(id) + ", beyond the vocabulary (" +
                 std::to_string(impl->vocab_size()) + " ids)");
    }
  };
  for (const int64_t id : impl->frame.prefix) check_id(id, "post_processor");
  for (const int64_t id : impl->frame.suffix) check_id(id, "post_processor");
  if (impl->padding) check_id(impl->padding->pad_id, "padding");
  return impl;
}

std::shared_ptr<Tokenizer::Impl> Tokenizer::Impl::load(const std::string& path) {
  const std::string label = file_label(path);
  return parse(read_file(path, label), label);
}

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

namespace {

// Runs a loader, turning any stray non-graft exception (a JSON type error the checks missed, an
// allocation failure on absurd input) into a FormatError naming the source.
template <typename Load>
auto guarded(const std::string& source, Load load) {
  try {
    return load();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw FormatError(source + ": " + e.what());
  }
}

}  // namespace

Tokenizer Tokenizer::from_json_string(const std::string& json_text, const std::string& source_name) {
  return Tokenizer(guarded(source_name, [&] { return Impl::parse(json_text, source_name); }));
}

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json_path) {
  return Tokenizer(guarded(tokenizer_json_path, [&] { return Impl::load(tokenizer_json_path); }));
}

namespace {

// bos_token / eos_token / pad_token in tokenizer_config.json: a string, an AddedToken object
// {"content": ...}, or null.
std::optional<std::string> special_token_name(const json& config, const char* key, const JsonWhere& where) {
  const json* value = find_member(config, key);
  if (value == nullptr || value->is_null()) return std::nullopt;
  if (value->is_object()) return require_string(*value, "content", where[key]);
  return expect_string(*value, where[key]);
}

// config.json's *_token_id: an id, a list of ids (the first one is taken, as generation does for
// eos_token_id lists), or null; also looked for under text_config for multimodal checkpoints.
std::optional<int64_t> config_token_id(const json& config, const char* key, const JsonWhere& where) {
  const json* value = find_member(config, key);
  JsonWhere at = where[key];
  if (value == nullptr || value->is_null()) {
    const json* text_config = find_member(config, "text_config");
    if (text_config == nullptr) return std::nullopt;
    value = find_member(*text_config, key);
    at = where["text_config"][key];
    if (value == nullptr || value->is_null()) return std::nullopt;
  }
  if (value->is_array()) {
    if (value->empty()) return std::nullopt;
    return expect_token_id((*value)[0], at.at(0));
  }
  return expect_token_id(*value, at);
}

json read_optional_json(const std::filesystem::path& path, std::string& label) {
  label = file_label(path.string());
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return json();
  const json value = tokenizer_detail::parse_json_text(read_file(path.string(), label), label);
  if (!value.is_object()) JsonWhere(label).fail("must hold a JSON object, got " + describe_json_type(value));
  return value;
}

}  // namespace

Tokenizer Tokenizer::from_model_dir(const std::string& dir) {
  const std::filesystem::path root(dir);
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec))
    throw InputError("model directory (" + dir + "): not found or not a directory");
  const std::filesystem::path tokenizer_json = root / "tokenizer.json";
  if (!std::filesystem::exists(tokenizer_json, ec)) {
    throw InputError("model directory (" + dir + "): has no tokenizer.json (only HF tokenizer.json files are read)");
  }
  return Tokenizer(guarded(dir, [&] { return with_model_config(Impl::load(tokenizer_json.string()), dir); }));
}

// Adds what tokenizer_config.json and config.json say about special tokens to a loaded tokenizer.
std::shared_ptr<Tokenizer::Impl> Tokenizer::with_model_config(std::shared_ptr<Impl> impl, const std::string& dir) {
  const std::filesystem::path root(dir);
  std::string config_label;
  std::string tokenizer_config_label;
  const json config = read_optional_json(root / "config.json", config_label);
  const json tokenizer_config = read_optional_json(root / "tokenizer_config.json", tokenizer_config_label);
  const JsonWhere config_where(config_label);
  const JsonWhere tc_where(tokenizer_config_label);

  const auto resolve = [&](const char* token_key, const char* id_key) -> std::optional<int64_t> {
    if (const auto name = special_token_name(tokenizer_config, token_key, tc_where)) {
      const auto id = impl->token_to_id(*name);
      if (!id) tc_where[token_key].fail(quote(*name) + " is not in the tokenizer's vocabulary");
      return id;
    }
    std::optional<int64_t> id = optional_int(tokenizer_config, id_key, tc_where);
    JsonWhere from = tc_where[id_key];
    if (!id) {
      id = config_token_id(config, id_key, config_where);
      from = config_where[id_key];
    }
    if (id && *id >= impl->vocab_size()) {
      from.fail("is " + std::to_string(*id) + ", beyond the vocabulary (" + std::to_string(impl->vocab_size()) +
                " ids)");
    }
    return id;
  };
  if (auto bos = resolve("bos_token", "bos_token_id")) impl->bos = bos;
  if (auto eos = resolve("eos_token", "eos_token_id")) impl->eos = eos;
  if (auto pad = resolve("pad_token", "pad_token_id")) impl->pad = pad;

  // transformers rebuilds the post-processor from these flags when the config states them.
  const json* add_bos = find_member(tokenizer_config, "add_bos_token");
  const json* add_eos = find_member(tokenizer_config, "add_eos_token");
  const bool has_flags = (add_bos != nullptr && !add_bos->is_null()) || (add_eos != nullptr && !add_eos->is_null());
  if (has_flags) {
    SpecialTokenFrame frame;
    if (optional_bool(tokenizer_config, "add_bos_token", false, tc_where)) {
      if (!impl->bos)
        tc_where["add_bos_token"].fail("is true but no BOS token is given (bos_token, bos_token_id, or config.json)");
      frame.prefix.push_back(*impl->bos);
    }
    if (optional_bool(tokenizer_config, "add_eos_token", false, tc_where)) {
      if (!impl->eos)
        tc_where["add_eos_token"].fail("is true but no EOS token is given (eos_token, eos_token_id, or config.json)");
      frame.suffix.push_back(*impl->eos);
    }
    impl->frame = std::move(frame);
  }
  return impl;
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& impl = *impl_;
  if (const std::size_t bad = tokenizer_detail::find_invalid_utf8(text); bad != std::string_view::npos) {
    throw InputError("encode: the text is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  }
  std::vector<Piece> pieces = impl.added.extract_and_normalize(text, impl.normalizer.get());
  if (impl.pre_tokenizer) impl.pre_tokenizer->pre_tokenize(pieces);
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Piece& piece : pieces) {
    if (piece.is_token()) {
      ids.push_back(piece.token_id);
    } else {
      impl.model.tokenize(piece.text, ids);
    }
  }
  // HF order: truncate (leaving room for the special tokens), add them, then pad.
  if (impl.truncation) {
    std::size_t max_length = impl.truncation->max_length;
    const std::size_t added = impl.frame.prefix.size() + impl.frame.suffix.size();
    if (add_special_tokens) max_length = max_length > added ? max_length - added : 0;
    if (ids.size() > max_length) {
      if (impl.truncation->from_left) {
        ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(max_length));
      } else {
        ids.resize(max_length);
      }
    }
  }
  if (add_special_tokens) {
    ids.insert(ids.begin(), impl.frame.prefix.begin(), impl.frame.prefix.end());
    ids.insert(ids.end(), impl.frame.suffix.begin(), impl.frame.suffix.end());
  }
  if (impl.padding) {
    std::size_t target = impl.padding->fixed_length.value_or(ids.size());
    const std::size_t m = impl.padding->multiple_of;
    if (m > 0 && target % m != 0) target += m - target % m;
    if (ids.size() < target)
      ids.insert(impl.padding->on_left ? ids.begin() : ids.end(), target - ids.size(), impl.padding->pad_id);
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& impl = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int64_t id : ids) {
    const std::string& token = impl.require_token(id, "decode");
    if (skip_special_tokens && impl.added.is_special(token)) continue;
    tokens.push_back(token);
  }
  std::string out;
  if (impl.decoder) {
    for (const std::string& piece : impl.decoder->decode_chain(std::move(tokens))) out += piece;
  } else {
    // HF joins the raw tokens with spaces when there is no decoder.
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
  }
  return out;
}

std::optional<int64_t> Tokenizer::token_to_id(std::string_view token) const { return impl_->token_to_id(token); }

std::string Tokenizer::id_to_token(int64_t id) const { return impl_->require_token(id, "id_to_token"); }

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }

std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos; }

std::optional<int64_t> Tokenizer::eos_id() const { return impl_->eos; }

std::optional<int64_t> Tokenizer::pad_id() const { return impl_->pad; }

bool Tokenizer::adds_bos() const { return !impl_->frame.prefix.empty(); }

}  // namespace graft
