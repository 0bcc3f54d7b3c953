// Text helpers of edits/: prompt templates and how reports show text.
#pragma once

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace graft::edits {

// `prompt_template` with its first "{}" replaced by `text` (the subject, or a prompt inside a
// context template). InputError naming the template when it holds no "{}".
std::string fill_template(const std::string& prompt_template, const std::string& text);

// `"text"` with newlines written as \n, for one-line text reports.
std::string quoted_for_report(const std::string& text);

// printf into a std::string, for the text reports of crown-scan and evaluation.
__attribute__((format(printf, 1, 2))) inline std::string strprintf(const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int length = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(static_cast<size_t>(std::max(length, 0)) + 1, '\0');
  std::vsnprintf(out.data(), out.size(), format, again);
  va_end(again);
  out.pop_back();  // the terminating NUL vsnprintf wrote
  return out;
}

}  // namespace graft::edits
