#include "edits/text.h"

#include "core/error.h"

namespace graft::edits {

std::string fill_template(const std::string& prompt_template, const std::string& text) {
  const size_t slot = prompt_template.find("{}");
  if (slot == std::string::npos)
    throw InputError("prompt \"" + prompt_template + "\": needs \"{}\" where the subject goes");
  std::string out = prompt_template;
  out.replace(slot, 2, text);
  return out;
}

std::string quoted_for_report(const std::string& text) {
  std::string out = "\"";
  for (char c : text) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out + "\"";
}

}  // namespace graft::edits
