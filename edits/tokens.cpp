#include "edits/tokens.h"

#include "arch/arch.h"
#include "core/error.h"
#include "core/model.h"
#include "core/tokenizer/tokenizer.h"
#include "edits/text.h"

namespace graft::edits {
namespace {

// Length of the text the first `count` tokens decode to (special tokens skipped).
size_t decoded_length(const Tokenizer& tokenizer, const std::vector<int64_t>& ids, size_t count) {
  return tokenizer.decode(std::vector<int64_t>(ids.begin(), ids.begin() + static_cast<long>(count)), true).size();
}

}  // namespace

std::vector<int64_t> encode_prompt(const Model& model, const std::string& text) {
  const Tokenizer& tokenizer = model.require_tokenizer();
  std::vector<int64_t> ids = tokenizer.encode(text, /*add_special_tokens=*/true);
  const auto bos = tokenizer.bos_id();
  if (bos && model.spec().always_prepend_bos && (ids.empty() || ids.front() != *bos)) ids.insert(ids.begin(), *bos);
  return ids;
}

SubjectSpan locate_subject(const Model& model, const std::string& prompt_template, const std::string& subject) {
  const size_t slot = prompt_template.find("{}");
  if (slot == std::string::npos)
    throw InputError("prompt \"" + prompt_template + "\": needs \"{}\" where the subject goes");
  if (subject.empty()) throw InputError("subject: empty");
  const std::string text = fill_template(prompt_template, subject);
  const Tokenizer& tokenizer = model.require_tokenizer();

  SubjectSpan span;
  span.ids = encode_prompt(model, text);
  // Decoding is prefix-stable: the first token whose decoded prefix reaches past a character
  // offset is the token that holds that character.
  const size_t subject_begin = slot, subject_end = slot + subject.size();
  int64_t first = -1, last = -1;
  for (size_t i = 1; i <= span.ids.size(); ++i) {
    const size_t covered = decoded_length(tokenizer, span.ids, i);
    if (first < 0 && covered > subject_begin) first = static_cast<int64_t>(i) - 1;
    if (covered >= subject_end) {
      last = static_cast<int64_t>(i) - 1;
      break;
    }
  }
  if (first < 0 || last < 0 || last < first)
    throw InputError("subject \"" + subject + "\": could not locate its tokens in \"" + text + "\"");
  span.first = first;
  span.last = last;
  return span;
}

PromptWithTarget split_target(const Model& model, const std::string& prompt, const std::string& target) {
  if (target.empty()) throw InputError("target: empty");
  const std::vector<int64_t> alone = encode_prompt(model, prompt);
  const std::vector<int64_t> together = encode_prompt(model, prompt + target);
  size_t common = 0;
  while (common < alone.size() && common < together.size() && alone[common] == together[common]) ++common;
  PromptWithTarget out;
  out.prompt.assign(together.begin(), together.begin() + static_cast<long>(common));
  out.target.assign(together.begin() + static_cast<long>(common), together.end());
  if (out.target.empty() || out.prompt.empty())
    throw InputError("target \"" + target + "\": yields no tokens after the prompt \"" + prompt + "\"");
  return out;
}

}  // namespace graft::edits
