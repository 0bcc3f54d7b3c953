// Turning edit requests into token positions: where the subject ends in a prompt, which tokens
// are the target. Shared by crown-scan, ROME, MEMIT and evaluation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace graft {
class Model;
class Tokenizer;
}  // namespace graft

namespace graft::edits {

// Encodes a prompt the way the editors feed it: with BOS when the tokenizer config asks for it,
// and always on models whose architecture needs it (ModelSpec::always_prepend_bos: the Gemma
// families). Python's Model.to_tokens applies the same rule.
std::vector<int64_t> encode_prompt(const Model& model, const std::string& text);

struct SubjectSpan {
  std::vector<int64_t> ids;  // the whole prompt, BOS included
  int64_t first = 0;         // first token that carries subject text
  int64_t last = 0;          // last token that carries subject text: ROME/MEMIT's "subject_last"
};

// `prompt_template` holds "{}" where the subject goes. The span is found from decoded text, so it
// is right whatever the tokenizer merges across the subject's boundaries. InputError when the
// subject yields no token of its own.
SubjectSpan locate_subject(const Model& model, const std::string& prompt_template, const std::string& subject);

struct PromptWithTarget {
  std::vector<int64_t> prompt;  // tokens before the target
  std::vector<int64_t> target;  // the target's tokens (tokenised together with the prompt)
};

// Tokenises prompt + target together and takes the target's tokens as the tail: a tokenizer may
// merge across the boundary differently than the two pieces alone.
PromptWithTarget split_target(const Model& model, const std::string& prompt, const std::string& target);

}  // namespace graft::edits
