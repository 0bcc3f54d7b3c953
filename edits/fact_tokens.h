// Which subject tokens an edit reads its keys at and writes its values to, and the bookkeeping of
// fact slots (one key, one value, one constraint each).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "edits/request.h"

namespace graft {
class Model;
}

namespace graft::edits {

// Subject tokens counted from the subject's end (0: its last token). Counting from the end keeps a
// choice meaningful across contexts: a subject at the start of a text and after a prefix can
// tokenise differently at its first token, rarely at its tail.
struct FactTokens {
  std::vector<int64_t> from_end{0};
  // The positions in a prompt whose subject spans [first, last], one per offset; offsets past the
  // subject's start are clamped to it (so a position can repeat).
  std::vector<int64_t> in(int64_t first, int64_t last) const;
  size_t size() const { return from_end.size(); }
};

// How an editor picks its fact tokens: the subject's last token (ROME's published "subject_last"),
// the one token causal tracing finds carries the fact, or every token of the subject. Small models
// trained on names spread a fact over the subject's tokens (each sub-word votes for the answer), and
// one rank-1 edit at the last token cannot outvote the others; `subject` writes one value per token
// (a rank-P update, P the subject's length in tokens).
enum class FactTokenChoice { Last, Traced, Subject };
FactTokenChoice parse_fact_token(const std::string& name);  // "last" / "traced" / "subject"; InputError otherwise
const char* fact_token_name(FactTokenChoice choice);

// The `count` subject tokens whose clean hidden state after `layer` best restores the model's own
// answer when the subject is corrupted (causal_trace.h, seeded with `seed`), on the bare prompt,
// among the last `within_last` tokens. Most restoring first; ties go to the later token.
FactTokens traced_fact_token(const Model& model, const EditRequest& request, int layer, uint64_t seed,
                             int64_t count = 1, int64_t within_last = std::numeric_limits<int64_t>::max());

// The fact tokens of `choice` for one request, among the subject tokens every context (and the KL
// prompt) shares, counted from the end: Subject takes them all, Traced the `traced_tokens` best.
FactTokens choose_fact_tokens(const Model& model, const EditRequest& request, FactTokenChoice choice,
                              const std::vector<std::string>& contexts, int layer, uint64_t seed,
                              int64_t traced_tokens = 1);

// The fact tokens of request `r` (empty `tokens`: the last token for every request).
FactTokens fact_tokens_of(const std::vector<FactTokens>& tokens, size_t r);

// A fact slot is one (request, fact token) pair. Slots are ordered by request, then by the request's
// fact tokens. The request of every slot:
std::vector<int64_t> slot_requests(size_t requests, const std::vector<FactTokens>& tokens);

// The vector each slot is given: requests about the same subject share one per fact token (the
// same subject string and offset from its end), so an edit can teach a subject several new facts
// at once. Values are numbered in order of first appearance.
std::vector<int64_t> shared_value_slots(const std::vector<EditRequest>& requests,
                                        const std::vector<FactTokens>& tokens);

// The prompt the KL term holds still: what the model says the subject is.
constexpr const char* kEssencePrompt = "{} is a";

}  // namespace graft::edits
