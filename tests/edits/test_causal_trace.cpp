// The one causal tracer (edits/causal_trace.h) that crown-scan and the editors' fact-token choice
// share: its definition (sigma of the embedding table, row 0 clean, noise on the subject only) and
// what restoring a piece of the clean run gives back.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>

#include "core/model.h"
#include "edits/causal_trace.h"
#include "edits/fact_tokens.h"
#include "edits/request.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

const std::string kFacts = std::string(GRAFT_TEST_DATA) + "/facts/";

const Model& llama() {
  static const std::shared_ptr<Model> model = Model::load(kFacts + "llama_facts");
  return *model;
}

EditRequest first_request() { return load_requests(kFacts + "requests.json").front(); }

TEST(CausalTrace, SigmaIsTheStdOfTheScaledEmbeddingTable) {
  const Model& m = llama();
  const double expected = m.embed_tokens().to(at::kDouble).std().item<double>() * m.spec().embed_scale;
  EXPECT_NEAR(embedding_std(m), expected, 1e-12 * expected);
}

TEST(CausalTrace, RestoringTheLastResidualGivesTheCleanAnswerBack) {
  const Model& m = llama();
  const EditRequest r = first_request();
  const SubjectSpan span = locate_subject(m, r.prompt, r.subject);
  at::NoGradGuard no_grad;
  const at::Tensor clean = last_position_log_probs(m, at::tensor(span.ids, at::kLong).unsqueeze(0)).select(0, 0);
  const int64_t answer = clean.argmax().item<int64_t>();
  const CausalTrace tracer(m, span.ids, span.first, span.last, TraceOptions{});
  // The last layer's residual at the last position decides the prediction: restored, every
  // corrupted row predicts exactly what the clean row does.
  const double restored = tracer.restored_probability(answer,
                                                      {HookName{HookPoint::ResidPost, m.arch().num_layers() - 1}},
                                                      static_cast<int64_t>(span.ids.size()) - 1);
  EXPECT_NEAR(restored, std::exp(clean[answer].item<double>()), 1e-5);
  // Corrupting the subject costs the facts model its answer; nothing restored, nothing comes back.
  EXPECT_LT(tracer.corrupted_probability(answer), restored - 0.1);
  EXPECT_EQ(tracer.forwards(), 2);
  EXPECT_DOUBLE_EQ(tracer.noise_std(), 3 * tracer.sigma());
}

TEST(CausalTrace, NoiseTouchesOnlyTheSubject) {
  // Restoring the embeddings at a position outside the subject changes nothing: the noise is not there.
  const Model& m = llama();
  const EditRequest r = first_request();
  const SubjectSpan span = locate_subject(m, r.prompt, r.subject);
  ASSERT_GT(static_cast<int64_t>(span.ids.size()) - 1, span.last);
  const CausalTrace tracer(m, span.ids, span.first, span.last, TraceOptions{});
  const int64_t answer = 0;
  const double corrupted = tracer.corrupted_probability(answer);
  EXPECT_DOUBLE_EQ(tracer.restored_probability(answer, {HookName{HookPoint::Embed, -1}}, span.last + 1), corrupted);
  EXPECT_NE(tracer.restored_probability(answer, {HookName{HookPoint::Embed, -1}}, span.last), corrupted);
}

TEST(CausalTrace, FactTokenChoiceIsCrownScansTrace) {
  // traced_fact_token ranks the subject's tokens by the tracer's restored probability.
  const Model& m = llama();
  const EditRequest r = first_request();
  const SubjectSpan span = locate_subject(m, r.prompt, r.subject);
  ASSERT_GT(span.last, span.first);
  at::NoGradGuard no_grad;
  const int64_t answer =
      last_position_log_probs(m, at::tensor(span.ids, at::kLong).unsqueeze(0)).select(0, 0).argmax().item<int64_t>();
  TraceOptions options;
  options.seed = 3;
  const CausalTrace tracer(m, span.ids, span.first, span.last, options);
  int64_t best = 0;
  double most = -1;
  for (int64_t position = span.first; position <= span.last; ++position) {
    const double p = tracer.restored_probability(answer, {HookName{HookPoint::ResidPost, 0}}, position);
    if (p >= most) most = p, best = span.last - position;
  }
  EXPECT_EQ(traced_fact_token(m, r, 0, 3).from_end, std::vector<int64_t>{best});
}

}  // namespace
}  // namespace graft::edits
