#include "core/io/detail.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <type_traits>

namespace graft::io::detail {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

std::string quoted(const std::string& name) {
  constexpr size_t kMaxChars = 200;  // a hostile header can hold a name of many megabytes
  return "\"" + printable(name, kMaxChars) + "\"";
}

namespace {

// True when one name is the other with a dotted prefix in front ("model.norm.weight" vs
// "norm.weight"): the most common mistake when a checkpoint and the code disagree on nesting.
bool differs_by_prefix(const std::string& a, const std::string& b) {
  const std::string& longer = a.size() > b.size() ? a : b;
  const std::string& shorter = a.size() > b.size() ? b : a;
  if (shorter.empty() || longer.size() == shorter.size()) return false;
  const size_t cut = longer.size() - shorter.size();
  return longer[cut - 1] == '.' && longer.compare(cut, std::string::npos, shorter) == 0;
}

// Levenshtein distance, giving up (returning limit + 1) once every entry of a row exceeds `limit`,
// so that scanning thousands of long tensor names stays cheap.
size_t edit_distance(const std::string& a, const std::string& b, size_t limit) {
  const size_t length_gap = a.size() > b.size() ? a.size() - b.size() : b.size() - a.size();
  if (length_gap > limit) return limit + 1;
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    size_t row_min = row[0];
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({substitute, row[j] + 1, row[j - 1] + 1});
      row_min = std::min(row_min, row[j]);
    }
    if (row_min > limit) return limit + 1;
  }
  return row[b.size()];
}

}  // namespace

std::string closest_name(const std::string& wanted, const std::vector<std::string>& candidates) {
  for (const auto& candidate : candidates)
    if (differs_by_prefix(wanted, candidate)) return candidate;
  // A budget relative to the length: a typo or a layer index off by a digit, not an unrelated name.
  const size_t limit = std::max<size_t>(2, wanted.size() / 8);
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& candidate : candidates) {
    const size_t d = edit_distance(wanted, candidate, limit);
    if (d <= limit && d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

std::string did_you_mean(const std::string& wanted, const std::vector<std::string>& candidates) {
  const std::string close = closest_name(wanted, candidates);
  return close.empty() ? std::string() : ", did you mean " + quoted(close) + "?";
}

namespace {

// Length of the valid UTF-8 sequence starting at text[i] (1-4), or 0 when the bytes there are not
// one (stray continuation byte, overlong form, surrogate, beyond U+10FFFF, cut short).
size_t utf8_sequence_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return 1;
  size_t length;
  uint32_t code;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2, code = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3, code = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4, code = lead & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  const bool overlong = (length == 3 && code < 0x800) || (length == 4 && code < 0x10000);
  const bool surrogate = code >= 0xd800 && code <= 0xdfff;
  return overlong || surrogate || code > 0x10ffff ? 0 : length;
}

std::string hex_escape(unsigned char byte) {
  static const char* kDigits = "0123456789abcdef";
  return std::string("\\x") + kDigits[byte >> 4] + kDigits[byte & 0xf];
}

}  // namespace

std::string printable(const std::string& text, size_t max_chars) {
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < text.size(); ++chars) {
    if (chars == max_chars) return out + "...";
    const size_t length = utf8_sequence_length(text, i);
    const auto lead = static_cast<unsigned char>(text[i]);
    if (length == 0 || lead < 0x20 || lead == 0x7f) {
      out += hex_escape(lead);
      ++i;
    } else {
      out.append(text, i, length);
      i += length;
    }
  }
  return out;
}

namespace {
// GNU strerror_r returns the message (possibly not in the buffer); XSI returns 0 on success.
// Overloads pick whichever the C library declares.
[[maybe_unused]] std::string strerror_result(const char* message, const char*, int) { return message; }
[[maybe_unused]] std::string strerror_result(int rc, const char* buffer, int errnum) {
  return rc == 0 ? std::string(buffer) : "error " + std::to_string(errnum);
}
}  // namespace

std::string os_error(int errnum) {
  char buffer[256] = {};
  return strerror_result(strerror_r(errnum, buffer, sizeof buffer), buffer, errnum);
}

}  // namespace graft::io::detail
