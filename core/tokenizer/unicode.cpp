#include "core/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <map>
#include <unordered_map>

#include "core/tokenizer/unicode_tables.h"

namespace graft::tokenizer_detail {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// Two-stage lookup (block of 256 code points -> deduplicated block of flags), built once from the
// generated range table: a lookup is two loads, which matters in the pre-tokenizer's inner loop.
struct FlagTable {
  std::vector<uint16_t> block_of;  // indexed by cp >> 8
  std::vector<uint8_t> flags;      // 256 entries per distinct block
};

FlagTable build_flag_table() {
  std::vector<uint8_t> all(kMaxCodePoint + 1, 0);
  for (std::size_t i = 0; i < kCategoryRangeCount; ++i) {
    const CategoryRange& r = kCategoryRanges[i];
    std::fill(all.begin() + r.first, all.begin() + r.last + 1, r.flags);
  }
  FlagTable table;
  std::map<std::vector<uint8_t>, uint16_t> seen;
  const std::size_t blocks = (kMaxCodePoint + 1) >> 8;
  table.block_of.resize(blocks);
  for (std::size_t b = 0; b < blocks; ++b) {
    std::vector<uint8_t> block(all.begin() + (b << 8), all.begin() + ((b + 1) << 8));
    auto [it, inserted] = seen.emplace(block, static_cast<uint16_t>(seen.size()));
    if (inserted) table.flags.insert(table.flags.end(), block.begin(), block.end());
    table.block_of[b] = it->second;
  }
  return table;
}

const FlagTable& flag_table() {
  static const FlagTable table = build_flag_table();
  return table;
}

// Length of the valid UTF-8 sequence at s[pos], or 0 if it is ill-formed; on failure `bad_len`
// is the length of the maximal ill-formed subpart (what Rust replaces with one U+FFFD).
std::size_t utf8_valid_length(std::string_view s, std::size_t pos, std::size_t& bad_len) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[pos + k]); };
  const unsigned char b0 = byte(0);
  bad_len = 1;
  if (b0 < 0x80) return 1;
  std::size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  for (std::size_t k = 1; k < need; ++k) {
    if (pos + k >= s.size()) return 0;
    const unsigned char b = byte(k);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return 0;
    bad_len = k + 1;
  }
  return need;
}

struct NormalizationData {
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> decomposition;
  std::unordered_map<uint64_t, uint32_t> composition;
};

const NormalizationData& normalization_data() {
  static const NormalizationData data = [] {
    NormalizationData d;
    for (std::size_t i = 0; i < kDecompositionCount; ++i) {
      const Decomposition& e = kDecompositions[i];
      d.decomposition.emplace(e.code_point, std::make_pair(e.first, e.second));
      if (e.composes) d.composition.emplace((static_cast<uint64_t>(e.first) << 32) | e.second, e.code_point);
    }
    return d;
  }();
  return data;
}

// Hangul syllables decompose and compose algorithmically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void decompose_into(uint32_t cp, std::size_t source, std::vector<AlignedCodePoint>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back({kLBase + s / kNCount, source});
    out.push_back({kVBase + (s % kNCount) / kTCount, source});
    if (s % kTCount != 0) out.push_back({kTBase + s % kTCount, source});
    return;
  }
  const auto& map = normalization_data().decomposition;
  const auto it = map.find(cp);
  if (it == map.end()) {
    out.push_back({cp, source});
    return;
  }
  decompose_into(it->second.first, source, out);
  if (it->second.second != 0) decompose_into(it->second.second, source, out);
}

// Canonical ordering: stable sort of each run of non-starters by combining class. The sources
// stay where they are (positional), like HF's alignments, so they remain non-decreasing.
void canonical_order(std::vector<AlignedCodePoint>& cps) {
  std::size_t i = 0;
  while (i < cps.size()) {
    if (combining_class(cps[i].cp) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && combining_class(cps[j].cp) != 0) ++j;
    if (j - i > 1) {
      std::vector<uint32_t> run;
      for (std::size_t k = i; k < j; ++k) run.push_back(cps[k].cp);
      std::stable_sort(run.begin(), run.end(),
                       [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
      for (std::size_t k = i; k < j; ++k) cps[k].cp = run[k - i];
    }
    i = j;
  }
}

// The primary composite of (a, b), or 0.
uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto& map = normalization_data().composition;
  const auto it = map.find((static_cast<uint64_t>(a) << 32) | b);
  return it == map.end() ? 0 : it->second;
}

// Canonical composition (UAX #15): a mark joins the last starter unless a character between them
// has class 0 or a class >= its own.
void canonical_compose(std::vector<AlignedCodePoint>& cps) {
  if (cps.empty()) return;
  std::size_t starter = 0;
  int last_class = combining_class(cps[0].cp) == 0 ? 0 : 256;
  std::size_t out = 1;
  for (std::size_t i = 1; i < cps.size(); ++i) {
    const int cls = combining_class(cps[i].cp);
    const uint32_t composite = compose_pair(cps[starter].cp, cps[i].cp);
    if (composite != 0 && (last_class < cls || last_class == 0)) {
      cps[starter].cp = composite;
      continue;
    }
    if (cls == 0) starter = out;
    last_class = cls;
    cps[out++] = cps[i];
  }
  cps.resize(out);
}

}  // namespace

uint8_t unicode_flags(uint32_t cp) {
  if (cp > kMaxCodePoint) return 0;
  const FlagTable& t = flag_table();
  return t.flags[(static_cast<std::size_t>(t.block_of[cp >> 8]) << 8) | (cp & 0xFF)];
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::size_t find_invalid_utf8(std::string_view s) {
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::size_t bad_len;
    const std::size_t len = utf8_valid_length(s, pos, bad_len);
    if (len == 0) return pos;
    pos += len;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t bad_len;
    const std::size_t len = utf8_valid_length(bytes, pos, bad_len);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      pos += bad_len;
    } else {
      out.append(bytes.substr(pos, len));
      pos += len;
    }
  }
  return out;
}

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* begin = kCccRanges;
  const CccRange* end = kCccRanges + kCccRangeCount;
  const CccRange* it = std::upper_bound(begin, end, cp, [](uint32_t c, const CccRange& r) { return c < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

std::vector<AlignedCodePoint> normalize_nfd(const std::vector<uint32_t>& input) {
  std::vector<AlignedCodePoint> out;
  out.reserve(input.size());
  for (std::size_t i = 0; i < input.size(); ++i) decompose_into(input[i], i, out);
  canonical_order(out);
  return out;
}

std::vector<AlignedCodePoint> normalize_nfc(const std::vector<uint32_t>& input) {
  std::vector<AlignedCodePoint> out = normalize_nfd(input);
  canonical_compose(out);
  return out;
}

}  // namespace graft::tokenizer_detail
