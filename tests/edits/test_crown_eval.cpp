// crown-scan and CounterFact-style evaluation on the facts models (they know every fact of
// tests/data/facts/requests.json): the unedited scores, the layer pick, input checks, and that the
// batched computations equal plain one-sequence forwards.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "core/hooks.h"
#include "core/model.h"
#include "edits/crown_scan.h"
#include "edits/evaluate.h"
#include "edits/request.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

const std::string kFacts = std::string(GRAFT_TEST_DATA) + "/facts/";

std::string model_dir(const std::string& name) {
  return name == "gemma4_facts" ? std::string(GRAFT_MODELS_DIR) + "/gemma4_facts" : kFacts + name;
}

// Loaded once per process: every test reads them, none changes them.
const Model& model(const std::string& name) {
  static std::map<std::string, std::shared_ptr<Model>> loaded;
  auto& slot = loaded[name];
  if (!slot) slot = Model::load(model_dir(name));
  return *slot;
}

const std::vector<EditRequest>& requests() {
  static const std::vector<EditRequest> all = load_requests(kFacts + "requests.json");
  return all;
}

template <typename F>
std::string input_error(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "no InputError";
}

// p(token) at the last position of one prompt, with an optional hook: the plain, unbatched reference.
double last_token_prob(const Model& m, const std::vector<int64_t>& ids, int64_t token, const Hooks* hooks = nullptr) {
  at::NoGradGuard no_grad;
  ForwardOptions options;
  options.hooks = hooks;
  at::Tensor logits = m.forward(at::tensor(ids, at::kLong).unsqueeze(0), options);
  return logits[0][-1].to(at::kFloat).softmax(-1)[token].item<double>();
}

// exp(mean log p(target tokens)) from one unpadded forward over prompt + target.
double teacher_forced_prob(const Model& m, const std::string& prompt, const std::string& target) {
  at::NoGradGuard no_grad;
  const PromptWithTarget split = split_target(m, prompt, target);
  std::vector<int64_t> ids = split.prompt;
  ids.insert(ids.end(), split.target.begin(), split.target.end());
  at::Tensor log_probs = m.forward(at::tensor(ids, at::kLong).unsqueeze(0))[0].to(at::kFloat).log_softmax(-1);
  double sum = 0;
  for (size_t t = 0; t < split.target.size(); ++t)
    sum += log_probs[static_cast<int64_t>(split.prompt.size() + t) - 1][split.target[t]].item<double>();
  return std::exp(sum / static_cast<double>(split.target.size()));
}

class FactsModel : public ::testing::TestWithParam<std::string> {};

// ---------------------------------------------------------------------------------------------
// crown-scan

TEST_P(FactsModel, CrownScanFindsTheLayersThatCarryTheFact) {
  const Model& m = model(GetParam());
  const EditRequest& r = requests()[20];  // "The capital of {} is", "Quianeimtum"
  ASSERT_EQ(r.subject, "Quianeimtum");
  const CrownScanResult scan = crown_scan(m, r.prompt, r.subject, std::nullopt);

  ASSERT_EQ(static_cast<int>(scan.layers.size()), m.arch().num_layers());
  // The default answer is the model's own: the first token of the true target, which it knows well.
  EXPECT_TRUE(scan.expect_is_model_answer);
  EXPECT_EQ(scan.expect_token, split_target(m, r.filled_prompt(), *r.target_true).target.front());
  EXPECT_GT(scan.baseline_prob, 0.99);
  // The noise must destroy much of the answer, and the picked layers must bring a good part back.
  EXPECT_LT(scan.corrupted_prob, 0.75 * scan.baseline_prob);
  EXPECT_GT(scan.layers[static_cast<size_t>(scan.trace_layer)].indirect_effect, 0.3);
  EXPECT_GT(scan.layers[static_cast<size_t>(scan.mlp_trace_layer)].mlp_indirect_effect, 0.1);
  EXPECT_EQ(scan.picked_layer, scan.mlp_trace_layer);
  EXPECT_TRUE(scan.layers[static_cast<size_t>(scan.picked_layer)].reaches_answer);
  // Ablation: these models hold their facts redundantly, so one MLP at one token moves log p only a
  // little; the peak is still a real drop.
  EXPECT_LT(scan.layers[static_cast<size_t>(scan.ablation_layer)].ablation_log_delta, 0.0);
  for (const CrownLayer& l : scan.layers) {
    EXPECT_NEAR(l.indirect_effect, l.traced_prob - scan.corrupted_prob, 1e-12);
    EXPECT_GE(l.ablated_prob, 0.0);
    EXPECT_LE(l.ablated_prob, 1.0);
  }
}

TEST_P(FactsModel, BatchedAblationEqualsOneLayerAtATime) {
  const Model& m = model(GetParam());
  const EditRequest& r = requests()[3];
  CrownScanOptions options;
  options.trace = false;
  const CrownScanResult scan = crown_scan(m, r.prompt, r.subject, std::nullopt, options);
  const SubjectSpan span = locate_subject(m, r.prompt, r.subject);
  EXPECT_NEAR(scan.baseline_prob, last_token_prob(m, span.ids, scan.expect_token), 1e-5);
  for (int layer = 0; layer < m.arch().num_layers(); ++layer) {
    Hooks hooks(m.arch().num_layers());
    hooks.add(HookName{HookPoint::MlpOut, layer},
              [&](const at::Tensor& x, const HookName&) -> std::optional<at::Tensor> {
                at::Tensor out = x.clone();
                out[0][span.last].zero_();
                return out;
              });
    EXPECT_NEAR(scan.layers[static_cast<size_t>(layer)].ablated_prob,
                last_token_prob(m, span.ids, scan.expect_token, &hooks), 1e-5)
        << "layer " << layer;
  }
}

INSTANTIATE_TEST_SUITE_P(Facts, FactsModel, ::testing::Values("gemma4_facts", "llama_facts", "gpt2_facts"));

TEST(CrownScan, LayersAboveTheLastKvProducerCannotReachTheAnswer) {
  // gemma4_facts: layers 4..7 read the K/V of layers 2 and 3, so what any layer from 3 up writes at
  // the subject's position is never read: no effect (up to the rounding of a different batch
  // shape, ~1e-12), and never picked.
  const Model& m = model("gemma4_facts");
  const EditRequest& r = requests()[20];
  const CrownScanResult scan = crown_scan(m, r.prompt, r.subject, std::nullopt);
  for (const CrownLayer& l : scan.layers) {
    EXPECT_EQ(l.reaches_answer, l.layer < 3) << "layer " << l.layer;
    if (l.reaches_answer) continue;
    EXPECT_NEAR(l.ablation_log_delta, 0.0, 1e-9) << "layer " << l.layer;
    EXPECT_NEAR(l.indirect_effect, 0.0, 1e-9) << "layer " << l.layer;
  }
  EXPECT_LT(scan.picked_layer, 3);
  EXPECT_LT(scan.ablation_layer, 3);
  EXPECT_LT(scan.trace_layer, 3);
  // With the subject as the prompt's last token every layer feeds the answer directly.
  CrownScanOptions ablation_only;
  ablation_only.trace = false;
  const CrownScanResult last = crown_scan(m, "The capital city is {}", "Quianeimtum", std::nullopt, ablation_only);
  for (const CrownLayer& l : last.layers) EXPECT_TRUE(l.reaches_answer) << "layer " << l.layer;
}

TEST(CrownScan, TableCoversEveryLayerWithItsOwnMlpWidth) {
  const Model& m = model("gemma4_facts");
  const EditRequest& r = requests()[1];
  CrownScanOptions options;
  options.window = 4;
  const CrownScanResult scan = crown_scan(m, r.prompt, r.subject, std::nullopt, options);
  const std::vector<int64_t> widths{384, 384, 384, 384, 768, 768, 768, 768};
  ASSERT_EQ(scan.layers.size(), widths.size());
  for (size_t i = 0; i < widths.size(); ++i) {
    EXPECT_EQ(scan.layers[i].layer, static_cast<int>(i));
    EXPECT_EQ(scan.layers[i].mlp_width, widths[i]);
    // The reference's window: [l - w/2, l + ceil(w/2)) clipped to the model.
    EXPECT_EQ(scan.layers[i].window_first, std::max(0, static_cast<int>(i) - 2));
    EXPECT_EQ(scan.layers[i].window_last, std::min(7, static_cast<int>(i) + 1));
  }
  // BOS first (Gemma needs it), and the subject span covers the subject's text.
  EXPECT_EQ(scan.tokens.front(), "<bos>");
  std::string subject;
  for (int64_t i = scan.subject_first; i <= scan.subject_last; ++i) subject += scan.tokens[static_cast<size_t>(i)];
  EXPECT_NE(subject.find(r.subject), std::string::npos) << subject;
  EXPECT_EQ(scan.forwards, 1 + 1 + 1 + 2 * 8);  // clean, ablation, corrupted, then two traces per layer
}

TEST(CrownScan, ExplicitMultiTokenExpectScoresItsFirstToken) {
  const Model& m = model("llama_facts");
  const EditRequest& r = requests()[0];
  const std::string answer = *r.target_true + " Works";  // two words: several tokens
  const PromptWithTarget split = split_target(m, r.filled_prompt(), answer);
  ASSERT_GT(split.target.size(), 1u);
  CrownScanOptions options;
  options.trace = false;
  // Without its leading space: the scan adds it, as for edit targets.
  const CrownScanResult scan = crown_scan(m, r.prompt, r.subject, answer.substr(1), options);
  EXPECT_FALSE(scan.expect_is_model_answer);
  EXPECT_EQ(scan.expect, answer);
  EXPECT_EQ(scan.expect_token, split.target.front());
  EXPECT_EQ(scan.expect_token_count, static_cast<int64_t>(split.target.size()));
  EXPECT_NE(format_crown_scan(scan).find("the first of the"), std::string::npos);
  // Its first token is the model's answer: the same baseline as the default.
  EXPECT_NEAR(scan.baseline_prob, crown_scan(m, r.prompt, r.subject, std::nullopt, options).baseline_prob, 1e-12);

  // A new target the model does not believe: tiny baseline, and the table is still complete.
  const CrownScanResult other = crown_scan(m, r.prompt, r.subject, r.target_new, options);
  EXPECT_LT(other.baseline_prob, 0.05);
  EXPECT_EQ(other.layers.size(), 6u);
}

TEST(CrownScan, CausalTraceIsDeterministicForASeed) {
  const Model& m = model("llama_facts");
  const EditRequest& r = requests()[2];
  CrownScanOptions options;
  options.tracing.samples = 4;
  const CrownScanResult a = crown_scan(m, r.prompt, r.subject, std::nullopt, options);
  const CrownScanResult b = crown_scan(m, r.prompt, r.subject, std::nullopt, options);
  options.tracing.seed = 7;
  const CrownScanResult c = crown_scan(m, r.prompt, r.subject, std::nullopt, options);
  EXPECT_EQ(a.corrupted_prob, b.corrupted_prob);
  bool differs = a.corrupted_prob != c.corrupted_prob;
  for (size_t i = 0; i < a.layers.size(); ++i) {
    EXPECT_EQ(a.layers[i].traced_prob, b.layers[i].traced_prob);
    EXPECT_EQ(a.layers[i].mlp_traced_prob, b.layers[i].mlp_traced_prob);
    differs = differs || a.layers[i].traced_prob != c.layers[i].traced_prob;
  }
  EXPECT_TRUE(differs) << "another seed should draw other noise";
}

TEST(CrownScan, JsonAndTextCarryTheTableAndThePicks) {
  const Model& m = model("gpt2_facts");
  const EditRequest& r = requests()[5];
  const CrownScanResult scan = crown_scan(m, r.prompt, r.subject, std::nullopt);
  const nlohmann::json j = to_json(scan);
  EXPECT_EQ(j["layers"].size(), scan.layers.size());
  EXPECT_EQ(j["picked_layer"], scan.picked_layer);
  EXPECT_EQ(j["trace_layer"], scan.trace_layer);
  EXPECT_EQ(j["ablation_layer"], scan.ablation_layer);
  EXPECT_DOUBLE_EQ(j["layers"][0]["mlp_indirect_effect"].get<double>(), scan.layers[0].mlp_indirect_effect);
  const std::string text = format_crown_scan(scan);
  EXPECT_NE(text.find("<- pick"), std::string::npos);
  EXPECT_NE(text.find("picked layer        " + std::to_string(scan.picked_layer)), std::string::npos);
}

TEST(CrownScan, BadInputNamesTheArgument) {
  const Model& m = model("gemma4_facts");
  EXPECT_NE(input_error([&] {
              crown_scan(m, "The capital of Quianeimtum is", "Quianeimtum", std::nullopt);
            }).find("write \"{}\" in place of \"Quianeimtum\""),
            std::string::npos);
  const std::string missing = input_error(
      [&] { crown_scan(m, "The capital of France is", "Quianeimtum", std::nullopt); });
  EXPECT_NE(missing.find("prompt"), std::string::npos) << missing;
  EXPECT_NE(missing.find("subject \"Quianeimtum\" is not in it"), std::string::npos) << missing;
  EXPECT_NE(input_error([&] { crown_scan(m, "{} and {} are", "X", std::nullopt); }).find("more than once"),
            std::string::npos);
  EXPECT_NE(input_error([&] { crown_scan(m, "The capital of {} is", "  ", std::nullopt); }).find("subject: empty"),
            std::string::npos);
  EXPECT_NE(input_error([&] {
              crown_scan(m, "The capital of {} is", "Quianeimtum", std::string(""));
            }).find("expect: empty"),
            std::string::npos);
  CrownScanOptions options;
  options.tracing.samples = 0;
  EXPECT_NE(input_error([&] {
              crown_scan(m, "The capital of {} is", "Quianeimtum", std::nullopt, options);
            }).find("samples"),
            std::string::npos);
  options = {};
  options.tracing.noise = -1;
  EXPECT_NE(input_error([&] {
              crown_scan(m, "The capital of {} is", "Quianeimtum", std::nullopt, options);
            }).find("noise"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// evaluation

class UneditedScores : public ::testing::TestWithParam<std::string> {};

TEST_P(UneditedScores, ModelsThatKnowEveryFactPreferTheTruth) {
  const EvaluationResult result = evaluate(model(GetParam()), requests());
  ASSERT_EQ(result.requests.size(), 100u);
  EXPECT_EQ(result.efficacy.requests, 100);
  EXPECT_EQ(result.efficacy.success, 0.0);
  EXPECT_EQ(result.efficacy.top1, 0.0);
  EXPECT_LT(result.efficacy.magnitude, -0.5);
  EXPECT_EQ(result.paraphrase.prompts, 400);
  EXPECT_LE(result.paraphrase.success, 0.02);
  EXPECT_LT(result.paraphrase.magnitude, -0.3);
  EXPECT_EQ(result.neighborhood.prompts, 500);
  EXPECT_EQ(result.neighborhood.success, 1.0);
  EXPECT_GT(result.neighborhood.magnitude, 0.5);
  EXPECT_GE(result.neighborhood.top1, 0.98);
  EXPECT_EQ(result.score, 0.0);  // efficacy 0 makes the harmonic mean 0
}

INSTANTIATE_TEST_SUITE_P(Facts, UneditedScores, ::testing::Values("gemma4_facts", "llama_facts", "gpt2_facts"));

TEST(Evaluate, ProbabilitiesAreTeacherForcedMeansOverTheTargetTokens) {
  const Model& m = model("gemma4_facts");
  const EditRequest& r = requests()[7];
  const EvaluationResult result = evaluate(m, {r});
  const RequestEvaluation& row = result.requests[0];
  EXPECT_NEAR(row.rewrite.p_wanted, teacher_forced_prob(m, r.filled_prompt(), r.target_new), 1e-5);
  EXPECT_NEAR(row.rewrite.p_rival, teacher_forced_prob(m, r.filled_prompt(), *r.target_true), 1e-5);
  ASSERT_FALSE(row.paraphrases.empty());
  EXPECT_NEAR(row.paraphrases[1].p_rival, teacher_forced_prob(m, r.paraphrase_prompts[1], *r.target_true), 1e-5);
  ASSERT_FALSE(row.neighbors.empty());
  EXPECT_NEAR(row.neighbors[0].p_wanted,
              teacher_forced_prob(m, r.neighborhood_prompts[0].prompt, r.neighborhood_prompts[0].target), 1e-5);
  EXPECT_NEAR(row.neighbors[0].p_rival, teacher_forced_prob(m, r.neighborhood_prompts[0].prompt, r.target_new), 1e-5);
}

TEST(Evaluate, BatchingGivesTheSameNumbersAsOneSequenceAtATime) {
  const Model& m = model("gemma4_facts");
  const std::vector<EditRequest> some(requests().begin(), requests().begin() + 8);
  EvaluateOptions one;
  one.batch_size = 1;
  const EvaluationResult batched = evaluate(m, some);
  const EvaluationResult single = evaluate(m, some, one);
  EXPECT_LT(batched.forwards, single.forwards / 10);
  EXPECT_EQ(single.forwards, single.sequences);
  auto same = [](const PromptScore& a, const PromptScore& b) {
    EXPECT_NEAR(a.p_wanted, b.p_wanted, 1e-5 + 1e-4 * b.p_wanted) << a.prompt;
    EXPECT_NEAR(a.p_rival, b.p_rival, 1e-5 + 1e-4 * b.p_rival) << a.prompt;
    EXPECT_EQ(a.top1, b.top1) << a.prompt;
  };
  for (size_t i = 0; i < some.size(); ++i) {
    same(batched.requests[i].rewrite, single.requests[i].rewrite);
    for (size_t p = 0; p < some[i].paraphrase_prompts.size(); ++p)
      same(batched.requests[i].paraphrases[p], single.requests[i].paraphrases[p]);
    for (size_t n = 0; n < some[i].neighborhood_prompts.size(); ++n)
      same(batched.requests[i].neighbors[n], single.requests[i].neighbors[n]);
  }
}

TEST(Evaluate, NeighboursWhoseAnswerIsTheNewTargetAreNoContest) {
  // Nine neighbour prompts of the fixture answer exactly the request's new target: p(own) > p(new)
  // cannot hold, so they stay out of NS / NM (and still count for top-1).
  const EvaluationResult result = evaluate(model("llama_facts"), requests());
  int64_t no_contest = 0;
  for (size_t i = 0; i < result.requests.size(); ++i)
    for (size_t n = 0; n < result.requests[i].neighbors.size(); ++n) {
      const PromptScore& p = result.requests[i].neighbors[n];
      const bool same_answer = requests()[i].neighborhood_prompts[n].target == requests()[i].target_new;
      EXPECT_EQ(p.compared, !same_answer);
      no_contest += !p.compared;
    }
  EXPECT_EQ(no_contest, 9);
}

TEST(Evaluate, ComparisonShowsBeforeAfterAndTheChange) {
  const Model& m = model("llama_facts");
  const std::vector<EditRequest> some(requests().begin(), requests().begin() + 3);
  const EvaluationResult before = evaluate(m, some);
  EvaluationResult after = before;
  after.efficacy.success = 1.0;
  const std::string table = format_comparison(before, after);
  EXPECT_NE(table.find("efficacy        ES"), std::string::npos);
  EXPECT_NE(table.find("0.00   100.00   +100.00"), std::string::npos) << table;
  const nlohmann::json j = to_json(before, false);
  EXPECT_EQ(j["summary"]["efficacy"]["success"], before.efficacy.success);
  EXPECT_FALSE(j.contains("requests"));
  EXPECT_EQ(to_json(before)["requests"].size(), 3u);
}

TEST(Evaluate, ARequestWithoutItsTrueTargetIsNamed) {
  std::vector<EditRequest> some(requests().begin(), requests().begin() + 2);
  some[1].target_true.reset();
  const std::string message = input_error([&] { evaluate(model("llama_facts"), some); });
  EXPECT_NE(message.find("request 1"), std::string::npos) << message;
  EXPECT_NE(message.find("target_true"), std::string::npos) << message;
}

}  // namespace
}  // namespace graft::edits
