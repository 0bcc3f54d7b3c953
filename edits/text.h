// Text helpers of edits/: prompt templates and how reports show text.
#pragma once

#include <string>

namespace graft::edits {

// `prompt_template` with its first "{}" replaced by `text` (the subject, or a prompt inside a
// context template). InputError naming the template when it holds no "{}".
std::string fill_template(const std::string& prompt_template, const std::string& text);

// `"text"` with newlines written as \n, for one-line text reports.
std::string quoted_for_report(const std::string& text);

}  // namespace graft::edits
