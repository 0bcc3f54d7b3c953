#include "core/tokenizer/bpe_model.h"

#include <cstdio>
#include <mutex>
#include <queue>
#include <shared_mutex>

#include "core/error.h"
#include "core/tokenizer/unicode.h"

namespace graft::tokenizer_detail {
namespace {

// Words shorter than this are cached (HF uses the same bound); the cache stops growing when full.
constexpr std::size_t kMaxCachedWordBytes = 256;
constexpr std::size_t kCacheCapacity = 1 << 16;

uint64_t pair_key(uint32_t left, uint32_t right) { return (static_cast<uint64_t>(left) << 32) | right; }

// A pending merge in the queue. Lowest rank first, then leftmost, exactly as HF's Word::merge_all
// orders them: the order decides the result when merges overlap.
struct QueuedMerge {
  uint32_t rank;
  uint32_t pos;
  uint32_t new_id;
};
struct LaterMerge {
  bool operator()(const QueuedMerge& a, const QueuedMerge& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};

// Vocabulary ids must be dense enough to index a vector; real vocabularies are 0..n-1.
void check_id_is_plausible(int64_t id, std::size_t entries, const JsonWhere& where, const std::string& token) {
  const int64_t limit = 4 * static_cast<int64_t>(entries) + 65536;
  if (id >= limit) {
    where.fail("gives " + quote(token) + " the id " + std::to_string(id) + ", far beyond its " +
               std::to_string(entries) + " entries");
  }
}

std::pair<std::string, std::string> parse_merge(const json& merge, const JsonWhere& where) {
  if (merge.is_string()) {
    const std::string line = merge.get<std::string>();
    const std::size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
      where.fail("must be two tokens separated by one space, got " + quote(line));
    }
    return {line.substr(0, space), line.substr(space + 1)};
  }
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return {merge[0].get<std::string>(), merge[1].get<std::string>()};
  }
  where.fail("must be a string \"a b\" or a pair [\"a\", \"b\"], got " + describe_json_type(merge));
}

}  // namespace

struct BpeModel::WordCache {
  mutable std::shared_mutex mutex;
  std::unordered_map<std::string, std::vector<uint32_t>> words;
};

BpeModel::BpeModel() : cache_(std::make_unique<WordCache>()) {}
BpeModel::BpeModel(BpeModel&&) noexcept = default;
BpeModel& BpeModel::operator=(BpeModel&&) noexcept = default;
BpeModel::~BpeModel() = default;

BpeModel BpeModel::from_json(const json& model, const JsonWhere& where) {
  if (!model.is_object()) where.fail("must be an object, got " + describe_json_type(model));
  const auto type = optional_string(model, "type", where);
  if (type && *type != "BPE") where["type"].fail(quote(*type) + " is not supported (supported: BPE)");
  if (const json* dropout = find_member(model, "dropout"); dropout != nullptr && !dropout->is_null()) {
    if (!dropout->is_number()) where["dropout"].fail("must be a number or null, got " + describe_json_type(*dropout));
    if (dropout->get<double>() != 0.0) {
      where["dropout"].fail("is " + dropout->dump() + "; BPE dropout makes encoding random and is not supported");
    }
  }

  BpeModel bpe;
  bpe.source_ = where.source();
  bpe.unk_token_ = optional_string(model, "unk_token", where);
  bpe.continuing_subword_prefix_ = optional_string(model, "continuing_subword_prefix", where).value_or("");
  bpe.end_of_word_suffix_ = optional_string(model, "end_of_word_suffix", where).value_or("");
  bpe.fuse_unk_ = optional_bool(model, "fuse_unk", false, where);
  bpe.byte_fallback_ = optional_bool(model, "byte_fallback", false, where);
  bpe.ignore_merges_ = optional_bool(model, "ignore_merges", false, where);

  const json& vocab = require_object(model, "vocab", where);
  const JsonWhere vocab_where = where["vocab"];
  bpe.vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = expect_token_id(it.value(), vocab_where[it.key()]);
    check_id_is_plausible(id, vocab.size(), vocab_where, it.key());
    if (static_cast<std::size_t>(id) >= bpe.id_to_token_.size()) {
      bpe.id_to_token_.resize(id + 1);
      bpe.has_token_.resize(id + 1, false);
    }
    if (bpe.has_token_[id]) {
      vocab_where.fail("gives the id " + std::to_string(id) + " to both " + quote(bpe.id_to_token_[id]) + " and " +
                       quote(it.key()));
    }
    bpe.id_to_token_[id] = it.key();
    bpe.has_token_[id] = true;
    bpe.vocab_.emplace(it.key(), static_cast<uint32_t>(id));
  }

  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    if (const auto it = bpe.vocab_.find(name); it != bpe.vocab_.end()) {
      bpe.byte_ids_[b] = it->second;
      bpe.has_byte_id_[b] = true;
    }
  }

  const json& merges = require_array(model, "merges", where);
  const std::size_t prefix_len = bpe.continuing_subword_prefix_.size();
  bpe.merges_.reserve(merges.size());
  uint32_t rank = 0;
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const JsonWhere merge_where = where["merges"].at(i);
    // merges.txt files start with a "#version" line, which HF skips without counting it.
    if (merges[i].is_string() && merges[i].get_ref<const std::string&>().rfind("#version", 0) == 0) continue;
    const auto [left, right] = parse_merge(merges[i], merge_where);
    const auto lookup = [&](const std::string& token) {
      const auto it = bpe.vocab_.find(token);
      if (it == bpe.vocab_.end()) merge_where.fail("names " + quote(token) + ", which is not in model.vocab");
      return it->second;
    };
    const uint32_t left_id = lookup(left);
    const uint32_t right_id = lookup(right);
    if (right.size() < prefix_len) merge_where.fail("has a right part shorter than continuing_subword_prefix");
    const uint32_t new_id = lookup(left + right.substr(prefix_len));
    bpe.merges_[pair_key(left_id, right_id)] = Merge{rank, new_id};  // a repeated pair keeps its last rank
    ++rank;
  }
  return bpe;
}

std::optional<int64_t> BpeModel::token_to_id(std::string_view token) const {
  const auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int64_t id) const {
  if (id < 0 || id >= id_limit() || !has_token_[id]) return nullptr;
  return &id_to_token_[id];
}

uint32_t BpeModel::unk_id() const {
  const auto it = vocab_.find(*unk_token_);
  if (it == vocab_.end()) {
    throw FormatError(source_ + ": model.unk_token " + quote(*unk_token_) +
                      " is not in model.vocab, and the text has a character that needs it");
  }
  return it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int64_t>& ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const auto it = vocab_.find(std::string(word)); it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  std::string key;
  if (cacheable) {
    key.assign(word);
    std::shared_lock lock(cache_->mutex);
    if (const auto it = cache_->words.find(key); it != cache_->words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<uint32_t> merged;
  merge_word(word, merged);
  ids.insert(ids.end(), merged.begin(), merged.end());
  if (cacheable) {
    std::unique_lock lock(cache_->mutex);
    if (cache_->words.size() < kCacheCapacity) cache_->words.emplace(std::move(key), std::move(merged));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<uint32_t>& out) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  split_into_symbols(word, symbols);
  apply_merges(symbols);
  out.clear();
  for (const Symbol& s : symbols) {
    if (s.byte_len != 0) out.push_back(s.id);
  }
}

// One symbol per character (HF's BPE::merge_word): the character's token, else its <0xNN> byte
// tokens, else unk (consecutive unks fused if fuse_unk), else nothing at all.
void BpeModel::split_into_symbols(std::string_view word, std::vector<Symbol>& symbols) const {
  const auto add = [&symbols](uint32_t id, uint32_t byte_len) {
    const auto index = static_cast<int32_t>(symbols.size());
    if (!symbols.empty()) symbols.back().next = index;
    symbols.push_back(Symbol{id, index - 1, -1, byte_len});
  };
  std::optional<std::pair<uint32_t, uint32_t>> pending_unk;  // (id, byte length)
  std::string piece;
  for (std::size_t pos = 0; pos < word.size();) {
    const auto len = static_cast<uint32_t>(utf8_sequence_length(static_cast<unsigned char>(word[pos])));
    const bool is_first = pos == 0;
    const bool is_last = pos + len >= word.size();
    piece.clear();
    if (!is_first) piece += continuing_subword_prefix_;
    piece.append(word.substr(pos, len));
    if (is_last) piece += end_of_word_suffix_;

    if (const auto it = vocab_.find(piece); it != vocab_.end()) {
      if (pending_unk) {
        add(pending_unk->first, pending_unk->second);
        pending_unk.reset();
      }
      add(it->second, len);
    } else {
      bool all_bytes = byte_fallback_;
      for (std::size_t i = 0; all_bytes && i < piece.size(); ++i)
        all_bytes = has_byte_id_[static_cast<unsigned char>(piece[i])];
      if (all_bytes) {
        // Like HF, byte tokens do not flush a pending unk first.
        for (const char b : piece) add(byte_ids_[static_cast<unsigned char>(b)], 1);
      } else if (unk_token_) {
        if (pending_unk && fuse_unk_) {
          pending_unk->second += len;
        } else {
          if (pending_unk) add(pending_unk->first, pending_unk->second);
          pending_unk = std::make_pair(unk_id(), len);
        }
      }
    }
    pos += len;
  }
  if (pending_unk) add(pending_unk->first, pending_unk->second);
}

// HF's Word::merge_all without dropout: repeatedly merge the best-ranked adjacent pair. Stale
// queue entries are recognised the way HF does, by the pair no longer producing the same token.
void BpeModel::apply_merges(std::vector<Symbol>& symbols) const {
  std::priority_queue<QueuedMerge, std::vector<QueuedMerge>, LaterMerge> queue;
  const auto find_merge = [this](uint32_t left, uint32_t right) -> const Merge* {
    const auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<uint32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.byte_len == 0 || left.next == -1) continue;
    const auto right_pos = static_cast<std::size_t>(left.next);
    const Symbol right = symbols[right_pos];
    const Merge* current = find_merge(left.id, right.id);
    if (current == nullptr || current->new_id != top.new_id) continue;

    left.id = top.new_id;
    left.byte_len += right.byte_len;
    left.next = right.next;
    symbols[right_pos].byte_len = 0;
    if (right.next >= 0) symbols[right.next].prev = static_cast<int32_t>(top.pos);

    if (left.prev >= 0) {
      if (const Merge* m = find_merge(symbols[left.prev].id, left.id)) {
        queue.push({m->rank, static_cast<uint32_t>(left.prev), m->new_id});
      }
    }
    if (left.next >= 0) {
      if (const Merge* m = find_merge(left.id, symbols[left.next].id)) queue.push({m->rank, top.pos, m->new_id});
    }
  }
}

}  // namespace graft::tokenizer_detail
