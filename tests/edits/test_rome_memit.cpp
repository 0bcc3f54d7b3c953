// ROME and MEMIT mechanics: keys at each layer's true width, the rank-1 constraint, the value
// optimisation, restored weights, and refusals.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "core/hooks.h"
#include "core/model.h"
#include "edits/memit.h"
#include "edits/rome.h"
#include "edits/activations.h"
#include "edits/solve.h"
#include "edits/tokens.h"
#include "edits/weight_update.h"
#include "../arch/arch_test_util.h"  // expect_input_error

namespace graft::edits {
namespace {

using arch::test::expect_input_error;

const std::string kModel = std::string(GRAFT_MODELS_DIR) + "/gemma4_facts";
const std::string kCorpus = std::string(GRAFT_MODELS_DIR) + "/facts_corpus.txt";

struct Fixture {
  std::shared_ptr<Model> model = Model::load(kModel);
  std::vector<EditRequest> requests = load_requests(std::string(GRAFT_TEST_DATA) + "/facts/requests.json");
  KeyStatistics stats = [this] {
    StatsOptions options;
    options.layers = {0, 1, 4};
    options.max_tokens = 4000;
    return KeyStatistics::collect(*model, KeyStatistics::read_corpus(kCorpus), options);
  }();
};
Fixture& fixture() {
  static Fixture f;
  return f;
}

double new_target_probability(const Model& model, const EditRequest& r) {
  const PromptWithTarget pt = split_target(model, r.filled_prompt(), r.target_new);
  ForwardOptions options;
  options.last_position_only = true;
  return model.forward(at::tensor(pt.prompt, at::kLong).unsqueeze(0), options)
      .to(at::kFloat)
      .softmax(-1)[0][0][pt.target[0]]
      .item<double>();
}

// The first `count` requests whose new target is one token: new_target_probability is then the
// whole target's, the one the value optimisation reports.
std::vector<EditRequest> one_token_target_requests(const Model& model, const std::vector<EditRequest>& requests,
                                                   size_t count) {
  std::vector<EditRequest> out;
  for (const auto& r : requests)
    if (out.size() < count && split_target(model, r.filled_prompt(), r.target_new).target.size() == 1) out.push_back(r);
  return out;
}

TEST(KeyStatistics, AreSymmetricAtEachLayersOwnWidth) {
  auto& f = fixture();
  EXPECT_EQ(f.stats.second_moment(0).sizes(), (at::IntArrayRef{384, 384}));
  EXPECT_EQ(f.stats.second_moment(4).sizes(), (at::IntArrayRef{768, 768}));  // double-wide, KV-shared layer
  EXPECT_TRUE(at::allclose(f.stats.second_moment(4), f.stats.second_moment(4).t()));
  EXPECT_THROW(f.stats.second_moment(2), InputError);
}

// What `measure` returns while the ROME edit `out` is applied to the model; the model is restored after.
template <typename Measure>
auto with_rome_applied(Model& model, const EditOutcome& out, const EditRequest& r, Measure measure) {
  PatchStack stack(model);
  const Patch patch = make_patch(model, out, "rome", {r});
  stack.apply(patch);
  auto measured = measure();
  stack.revert(patch);
  return measured;
}

TEST(Rome, SatisfiesItsConstraintAndRaisesTheNewTarget) {
  auto& f = fixture();
  const EditRequest& r = f.requests[0];
  RomeOptions options;
  options.layer = 0;
  options.fact_token = FactTokenChoice::Traced;
  const double before = new_target_probability(*f.model, r);
  const at::Tensor weight_before = f.model->weight(f.model->arch().mlp_down_projection(0).weight).clone();
  const EditOutcome out = rome(*f.model, r, f.stats, options);
  EXPECT_TRUE(at::equal(f.model->weight(f.model->arch().mlp_down_projection(0).weight), weight_before));  // untouched
  ASSERT_EQ(out.updates.size(), 1u);
  EXPECT_EQ(out.updates[0].left.sizes(), (at::IntArrayRef{128, 1}));
  EXPECT_EQ(out.updates[0].right.sizes(), (at::IntArrayRef{384, 1}));
  EXPECT_NEAR(out.updates[0].right.norm().item<double>(), 1.0, 1e-5);  // u = C^-1 k / |C^-1 k|
  EXPECT_EQ(out.diagnostics["fact_tokens_from_end"].size(), 1u);

  // The value optimisation made progress, and the patched model prefers the new target more.
  EXPECT_GT(out.diagnostics["target_probability"].get<double>(), before);
  EXPECT_GT(with_rome_applied(*f.model, out, r, [&] { return new_target_probability(*f.model, r); }), 100 * before);
  EXPECT_TRUE(at::equal(f.model->weight(f.model->arch().mlp_down_projection(0).weight), weight_before));
}

TEST(Rome, LeakageTermShrinksTheUpdatesExpectedChangeOverTheCorpus) {
  // GPT-2's facts model: its layer-0 edits move the MLP output on other text by about as much as the
  // output itself (the Gemma fixture's by about 1e-3), so the term has something to remove.
  auto& f = fixture();
  const auto model = Model::load(std::string(GRAFT_TEST_DATA) + "/facts/gpt2_facts");
  StatsOptions stats_options;
  stats_options.layers = {0};
  stats_options.max_tokens = 4000;
  const KeyStatistics stats = KeyStatistics::collect(*model, KeyStatistics::read_corpus(kCorpus), stats_options);
  const EditRequest& r = f.requests[0];
  RomeOptions options;
  options.layer = 0;
  options.fact_token = FactTokenChoice::Subject;
  options.consistent_keys = false;
  options.value.steps = 30;
  auto leakage_of = [&](const EditOutcome& out) {
    // ||dW||_C^2 / tr(W C W^T), from the update, the statistics and the weight (logical [H, I]).
    const at::Tensor c = stats.second_moment(0).to(at::kDouble);
    const auto& down = model->arch().mlp_down_projection(0);
    at::Tensor w = model->weight(down.weight).to(at::kDouble);
    if (down.layout == arch::WeightLayout::InOut) w = w.t();
    const at::Tensor dw = at::matmul(out.updates[0].left, out.updates[0].right.t()).to(at::kDouble);
    return (at::matmul(dw, c) * dw).sum().item<double>() / (at::matmul(w, c) * w).sum().item<double>();
  };
  const EditOutcome plain = rome(*model, r, stats, options);
  EXPECT_NEAR(plain.diagnostics["expected_leakage"].get<double>(), leakage_of(plain), 1e-4 * leakage_of(plain));
  options.value.leakage_weight = 10;
  const EditOutcome careful = rome(*model, r, stats, options);
  EXPECT_NEAR(careful.diagnostics["expected_leakage"].get<double>(), leakage_of(careful), 1e-4 * leakage_of(careful));
  EXPECT_LT(leakage_of(careful), 0.5 * leakage_of(plain));
  EXPECT_GT(careful.diagnostics["target_probability"].get<double>(), 0.5);  // still reaches its target
  EXPECT_EQ(careful.hyperparameters["value"]["leakage_weight"], 10.0);
}

// The subject's tokens on the bare prompt, as the editors locate them.
std::vector<int64_t> subject_positions(const Model& model, const EditRequest& r) {
  const SubjectSpan span = locate_subject(model, r.prompt, r.subject);
  std::vector<int64_t> out;
  for (int64_t p = span.last; p >= span.first; --p) out.push_back(p);  // fact-token order: from the end
  return out;
}

at::Tensor mlp_out_at(const Model& model, const EditRequest& r, int layer, const std::vector<int64_t>& positions) {
  std::map<std::string, at::Tensor> cache;
  Hooks hooks(model.arch().num_layers());
  hooks.cache({HookPoint::MlpDown, layer}, &cache);
  ForwardOptions options;
  options.hooks = &hooks;
  model.forward(at::tensor(locate_subject(model, r.prompt, r.subject).ids, at::kLong).unsqueeze(0), options);
  return cache.begin()->second[0].index_select(0, at::tensor(positions, at::kLong)).to(at::kDouble);
}

TEST(Rome, SubjectTokensGetOneExactConstraintEach) {
  // With the original (bare-prompt) keys in the constraint, the update must move the MLP output at
  // every subject token of the bare prompt by exactly the optimised change: rank P, P = its tokens.
  auto& f = fixture();
  const EditRequest& r = f.requests[1];
  RomeOptions options;
  options.layer = 0;
  options.fact_token = FactTokenChoice::Subject;
  options.consistent_keys = false;
  options.value.steps = 3;
  const std::vector<int64_t> positions = subject_positions(*f.model, r);
  ASSERT_GT(positions.size(), 2u);
  const EditOutcome out = rome(*f.model, r, f.stats, options);
  const int64_t p = static_cast<int64_t>(positions.size());
  ASSERT_EQ(out.updates.size(), 1u);
  EXPECT_EQ(out.updates[0].left.sizes(), (at::IntArrayRef{128, p}));
  EXPECT_EQ(out.updates[0].right.sizes(), (at::IntArrayRef{384, p}));
  EXPECT_EQ(out.diagnostics["fact_tokens_from_end"].size(), static_cast<size_t>(p));

  const at::Tensor before = mlp_out_at(*f.model, r, 0, positions);
  const at::Tensor after = with_rome_applied(*f.model, out, r, [&] { return mlp_out_at(*f.model, r, 0, positions); });
  const double moved = (after - before).norm().item<double>();
  EXPECT_NEAR(moved, out.diagnostics["delta_norm"].get<double>(), 1e-3 * moved);
}

TEST(Rome, ThroughUpdateWritesTheUpdateItOptimisedAndKeepsItsConstraints) {
  // Values optimised through ROME's own update (applied at every position) must be what the written
  // update does: the patched model reproduces the optimiser's final probability, and each subject
  // token's MLP output still moves by exactly its vector (K_c B = I).
  auto& f = fixture();
  const std::vector<EditRequest> chosen = one_token_target_requests(*f.model, f.requests, 1);
  ASSERT_EQ(chosen.size(), 1u);
  const EditRequest& r = chosen[0];
  RomeOptions options;
  options.layer = 0;
  options.templates = {};  // the bare prompt only: the reported probability is the one scored below
  options.fact_token = FactTokenChoice::Subject;
  options.consistent_keys = false;
  options.through_update = true;
  options.value.steps = 25;
  options.value.leakage_weight = 1;
  const double before = new_target_probability(*f.model, r);
  const std::vector<int64_t> positions = subject_positions(*f.model, r);
  ASSERT_GT(positions.size(), 1u);  // P > 1: a transposed G^-1 in the key map would show
  const at::Tensor outputs_before = mlp_out_at(*f.model, r, 0, positions);
  const EditOutcome out = rome(*f.model, r, f.stats, options);
  EXPECT_EQ(out.hyperparameters["through_update"], true);
  ASSERT_EQ(out.updates.size(), 1u);
  EXPECT_EQ(out.updates[0].right.size(1), static_cast<int64_t>(positions.size()));

  const auto [after, outputs_after] = with_rome_applied(*f.model, out, r, [&] {
    return std::make_pair(new_target_probability(*f.model, r), mlp_out_at(*f.model, r, 0, positions));
  });
  const double moved = (outputs_after - outputs_before).norm().item<double>();
  EXPECT_NEAR(after, out.diagnostics["target_probability"].get<double>(), 1e-4);
  EXPECT_GT(after, before + 0.3);
  EXPECT_NEAR(moved, out.diagnostics["delta_norm"].get<double>(), 1e-3 * moved);
}

TEST(Rome, ThroughUpdateMovesTheContextAveragedKeysByTheOptimisedVectors) {
  // With context-averaged constraint keys (the default), the update written through the update is
  // R = the optimised vectors, not the optimised output less the averaged current output: the
  // averaged keys must read exactly the vectors (|dW K_mean^T| = |delta|).
  auto& f = fixture();
  const EditRequest& r = f.requests[1];
  RomeOptions options;
  options.layer = 0;
  options.fact_token = FactTokenChoice::Subject;
  options.through_update = true;
  options.value.steps = 3;
  const EditOutcome out = rome(*f.model, r, f.stats, options);
  const std::vector<std::string> contexts = context_templates(*f.model, options.templates, options.seed);
  const std::vector<FactTokens> tokens{choose_fact_tokens(*f.model, r, options.fact_token, contexts, 0, options.seed)};
  const at::Tensor key_mean = subject_activations(*f.model, {r}, contexts, {HookName{HookPoint::MlpPost, 0}}, tokens)[0]
                                  .to(at::kDouble)
                                  .mean(1);
  const at::Tensor dw = at::matmul(out.updates[0].left, out.updates[0].right.t()).to(at::kDouble);  // [H, I]
  const double moved = at::matmul(dw, key_mean.t()).norm().item<double>();
  EXPECT_NEAR(moved, out.diagnostics["delta_norm"].get<double>(), 1e-3 * moved);
}

TEST(FactTokens, TracedPicksTheBestRestoringDistinctTokens) {
  auto& f = fixture();
  const EditRequest& r = f.requests[1];
  const int64_t length = static_cast<int64_t>(subject_positions(*f.model, r).size());
  const FactTokens one = traced_fact_token(*f.model, r, 0, 1);
  const FactTokens three = traced_fact_token(*f.model, r, 0, 1, 3);
  ASSERT_EQ(one.size(), 1u);
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three.from_end[0], one.from_end[0]);  // ranked: the single best comes first
  std::set<int64_t> distinct(three.from_end.begin(), three.from_end.end());
  EXPECT_EQ(distinct.size(), 3u);
  for (int64_t k : three.from_end) EXPECT_LT(k, length);
  // Limited to the last two tokens, only those can be chosen.
  const FactTokens tail = traced_fact_token(*f.model, r, 0, 1, 5, 2);
  EXPECT_EQ(tail.size(), 2u);
  for (int64_t k : tail.from_end) EXPECT_LT(k, 2);
}

TEST(Rome, RefusesLayersWithoutStatistics) {
  auto& f = fixture();
  RomeOptions options;
  options.layer = 2;
  EXPECT_THROW(rome(*f.model, f.requests[0], f.stats, options), InputError);
  options.layer = 99;
  EXPECT_THROW(rome(*f.model, f.requests[0], f.stats, options), InputError);
}

TEST(Rome, RefusesANegativeChunkSize) {
  auto& f = fixture();
  RomeOptions options;
  options.layer = 1;
  options.value.chunk_tokens = -1;
  EXPECT_THROW(rome(*f.model, f.requests[0], f.stats, options), InputError);
}

TEST(Memit, UpdatesEachLayerAtItsWidthAndRestoresTheModel) {
  auto& f = fixture();
  const std::vector<EditRequest> batch(f.requests.begin(), f.requests.begin() + 4);
  const at::Tensor w0 = f.model->weight(f.model->arch().mlp_down_projection(0).weight).clone();
  MemitOptions options;
  options.layers = {0, 1};
  options.covariance_weight = 1.0;
  const EditOutcome out = memit(*f.model, batch, f.stats, options);
  ASSERT_EQ(out.updates.size(), 2u);
  for (const auto& u : out.updates) {
    EXPECT_EQ(u.left.sizes(), (at::IntArrayRef{128, 4}));
    EXPECT_EQ(u.right.sizes(), (at::IntArrayRef{f.model->arch().intermediate_size_for_layer(u.layer), 4}));
    EXPECT_TRUE(at::isfinite(u.left).all().item<bool>() && at::isfinite(u.right).all().item<bool>());
  }
  EXPECT_TRUE(at::equal(f.model->weight(f.model->arch().mlp_down_projection(0).weight), w0));
  // Gemma normalises the MLP output before the residual: values are re-optimised at each layer.
  EXPECT_EQ(out.hyperparameters["targets"], "per-layer");
  EXPECT_EQ(out.diagnostics["layers"][1].count("mean_target_probability"), 1u);
  options.layers = {};
  EXPECT_THROW(memit(*f.model, batch, f.stats, options), InputError);
  options.layers = {6, 7};  // ends at the last layer: nothing downstream reads the subject
  expect_input_error([&] { memit(*f.model, batch, f.stats, options); }, {"last layer"});
}

TEST(Memit, JointTargetsWriteTheUpdateTheyOptimised) {
  // Joint values are optimised through the forward pass of the model their update makes: applying
  // the written update reproduces the target probability the optimiser ended with, to rounding.
  auto& f = fixture();
  const std::vector<EditRequest> batch = one_token_target_requests(*f.model, f.requests, 3);
  ASSERT_EQ(batch.size(), 3u);
  MemitOptions options;
  options.layers = {0, 1};
  options.templates = {};  // the bare prompt only: the reported probability is the one scored below
  options.targets = MemitTargets::Joint;
  options.fact_token = FactTokenChoice::Subject;
  options.covariance_weight = 100.0;
  options.value.steps = 25;
  options.value.clamp_norm_factor = 8;
  const EditOutcome out = memit(*f.model, batch, f.stats, options);
  ASSERT_EQ(out.updates.size(), 2u);
  EXPECT_EQ(out.hyperparameters["targets"], "joint");
  double after = 0, before = 0;
  for (const auto& r : batch) before += new_target_probability(*f.model, r) / 3;
  {
    TemporaryUpdates applied(*f.model);
    for (const auto& u : out.updates) applied.add(u);
    for (const auto& r : batch) after += new_target_probability(*f.model, r) / 3;
  }
  EXPECT_NEAR(after, out.diagnostics["mean_target_probability"].get<double>(), 1e-4);
  EXPECT_GT(after, before + 0.3);
  for (const auto& report : out.diagnostics["layers"]) EXPECT_GT(report["expected_leakage"].get<double>(), 0.0);

  // Other targets are fixed before the solve and cannot take the leakage term.
  options.value.leakage_weight = 1;
  options.targets = MemitTargets::PerLayer;
  expect_input_error([&] { memit(*f.model, batch, f.stats, options); }, {"--leakage-weight"});
}

TEST(Memit, JointLeakageTermShrinksTheUpdatesExpectedChangeOverTheCorpus) {
  // GPT-2's facts model, whose early MLP edits leak (see the ROME test above).
  auto& f = fixture();
  const auto model = Model::load(std::string(GRAFT_TEST_DATA) + "/facts/gpt2_facts");
  StatsOptions stats_options;
  stats_options.layers = {0, 1};
  stats_options.max_tokens = 4000;
  const KeyStatistics stats = KeyStatistics::collect(*model, KeyStatistics::read_corpus(kCorpus), stats_options);
  const std::vector<EditRequest> batch(f.requests.begin(), f.requests.begin() + 4);
  MemitOptions options;
  options.layers = {0, 1};
  options.templates = {};
  options.targets = MemitTargets::Joint;
  options.fact_token = FactTokenChoice::Subject;
  options.covariance_weight = 1000.0;
  options.value.steps = 25;
  options.value.clamp_norm_factor = 8;
  auto total_leakage = [](const EditOutcome& out) {
    double sum = 0;
    for (const auto& report : out.diagnostics["layers"]) sum += report["expected_leakage"].get<double>();
    return sum;
  };
  const EditOutcome plain = memit(*model, batch, stats, options);
  options.value.leakage_weight = 300;  // four edits leak about 1% of the output's power: a light term
  const EditOutcome careful = memit(*model, batch, stats, options);
  EXPECT_GT(total_leakage(plain), 0.0);
  EXPECT_LT(total_leakage(careful), 0.4 * total_leakage(plain));
  EXPECT_GT(careful.diagnostics["mean_target_probability"].get<double>(), 0.5);  // still reaches its targets
  EXPECT_EQ(careful.hyperparameters["value"]["leakage_weight"], 300.0);
}

TEST(OptimizeValues, RequestsAboutOneSubjectShareTheirVectors) {
  auto& f = fixture();
  // The two requests about "Plalfil Sharpluth" (different relations), then another subject.
  std::vector<EditRequest> batch;
  for (const auto& r : f.requests)
    if (r.subject == "Plalfil Sharpluth") batch.push_back(r);
  ASSERT_EQ(batch.size(), 2u);
  ASSERT_NE(batch[0].target_new, batch[1].target_new);
  batch.push_back(f.requests[0]);
  const std::vector<std::string> contexts{"{}"};
  std::vector<FactTokens> tokens;
  for (const auto& r : batch)
    tokens.push_back(choose_fact_tokens(*f.model, r, FactTokenChoice::Subject, contexts, 0, 1));
  ASSERT_EQ(tokens[0].from_end, tokens[1].from_end);
  const int64_t p = static_cast<int64_t>(tokens[0].size()), q = static_cast<int64_t>(tokens[2].size());
  ASSERT_GE(p, 2);
  std::vector<int64_t> expected;
  for (int64_t request = 0; request < 2; ++request)
    for (int64_t k = 0; k < p; ++k) expected.push_back(k);
  for (int64_t k = 0; k < q; ++k) expected.push_back(p + k);
  EXPECT_EQ(shared_value_slots(batch, tokens), expected);

  ValueOptions options;
  options.point = HookName{HookPoint::MlpDown, 0};
  options.steps = 30;
  const OptimizedValues v = optimize_values(*f.model, batch, contexts, options, tokens);
  EXPECT_EQ(v.values, p + q);
  ASSERT_EQ(v.delta.size(0), 2 * p + q);
  // One vector per token, moved towards both requests' targets at once.
  for (int64_t k = 0; k < p; ++k) EXPECT_TRUE(at::equal(v.delta[k], v.delta[p + k])) << k;
  EXPECT_GT(v.delta[0].norm().item<double>(), 0.0);
  EXPECT_FALSE(at::equal(v.delta[0], v.delta[2 * p]));
  EXPECT_GT(v.target_prob[0], 0.5);
  EXPECT_GT(v.target_prob[1], 0.5);
}

TEST(OptimizeValues, BarePromptWeightOneIgnoresThePrefixedContexts) {
  auto& f = fixture();
  const std::vector<EditRequest> batch{f.requests[0]};
  const std::vector<FactTokens> tokens{FactTokens{{0, 1}}};
  ValueOptions options;
  options.point = HookName{HookPoint::MlpDown, 0};
  options.steps = 5;
  const OptimizedValues bare_only = optimize_values(*f.model, batch, {"{}"}, options, tokens);
  const std::vector<std::string> contexts{"{}", "The weather was cold that year. {}"};
  const OptimizedValues equal = optimize_values(*f.model, batch, contexts, options, tokens);
  options.bare_prompt_weight = 1.0;
  const OptimizedValues bare_weighted = optimize_values(*f.model, batch, contexts, options, tokens);
  EXPECT_TRUE(at::allclose(bare_weighted.delta, bare_only.delta, 1e-3, 1e-3))
      << (bare_weighted.delta - bare_only.delta).abs().max().item<double>();
  EXPECT_FALSE(at::allclose(equal.delta, bare_only.delta, 1e-3, 1e-3));
}

// The value optimisation runs its rows in chunks (padding cut per chunk, gradients summed): one
// row per pass or all rows in one must give the same vectors, published and through the update.
TEST(OptimizeValues, ChunksOfAnySizeGiveTheSameVectors) {
  auto& f = fixture();
  const std::vector<EditRequest> batch(f.requests.begin(), f.requests.begin() + 3);
  const std::vector<std::string> contexts{"{}", "The weather was cold that year. {}", "So. {}"};
  ValueOptions options;
  options.point = HookName{HookPoint::MlpDown, 1};
  options.steps = 8;
  options.chunk_tokens = 1;  // one row per pass
  const OptimizedValues rows = optimize_values(*f.model, batch, contexts, options);
  options.chunk_tokens = 1 << 20;  // every row in one pass
  const OptimizedValues whole = optimize_values(*f.model, batch, contexts, options);
  EXPECT_GT(whole.delta.norm().item<double>(), 0.0);
  EXPECT_TRUE(at::allclose(rows.delta, whole.delta, 1e-4, 1e-4))
      << (rows.delta - whole.delta).abs().max().item<double>();
  EXPECT_EQ(rows.steps, whole.steps);
  for (size_t r = 0; r < batch.size(); ++r) EXPECT_NEAR(rows.loss[r], whole.loss[r], 1e-4);

  MemitOptions memit_options;
  memit_options.layers = {0, 1};
  memit_options.targets = MemitTargets::Joint;
  memit_options.fact_token = FactTokenChoice::Subject;
  memit_options.covariance_weight = 1000.0;
  memit_options.value.steps = 6;
  memit_options.value.leakage_weight = 1;
  memit_options.value.chunk_tokens = 1;
  const EditOutcome joint_rows = memit(*f.model, batch, f.stats, memit_options);
  memit_options.value.chunk_tokens = 1 << 20;
  const EditOutcome joint_whole = memit(*f.model, batch, f.stats, memit_options);
  ASSERT_EQ(joint_rows.updates.size(), joint_whole.updates.size());
  for (size_t u = 0; u < joint_rows.updates.size(); ++u) {
    const at::Tensor a = joint_rows.updates[u].left, b = joint_whole.updates[u].left;
    EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4 * b.abs().max().item<double>())) << (a - b).abs().max().item<double>();
  }
}

TEST(SolveSymmetric, AddsARidgeOnlyWhenRankDeficient) {
  SolveReport report;
  const at::Tensor b = at::ones({3}, at::kDouble);
  solve_symmetric(at::eye(3, at::kDouble) * 2, b, &report);
  EXPECT_EQ(report.ridge, 0.0);
  EXPECT_NEAR(report.condition, 1.0, 1e-12);
  const at::Tensor singular = at::tensor({1.0, 1.0, 1.0}, at::kDouble).unsqueeze(1);
  const at::Tensor x = solve_symmetric(at::matmul(singular, singular.t()), b, &report);
  EXPECT_GT(report.ridge, 0.0);
  EXPECT_TRUE(at::isfinite(x).all().item<bool>());
}

}  // namespace
}  // namespace graft::edits
