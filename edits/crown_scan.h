// crown-scan: where does the model keep a fact? Two views, per layer, at the subject's last token.
//
//  * Ablation (necessity): zero blocks.{i}.hook_mlp_out at the subject's last token and measure how
//    much the probability of the expected answer drops.
//  * Causal tracing (sufficiency; Meng et al. 2022, experiments/causal_trace.py): add Gaussian noise
//    to the subject's token embeddings, then restore one layer's clean hidden state
//    (blocks.{i}.hook_resid_post) at the subject's last token, or the clean MLP outputs over a
//    window of layers around i, and measure how much of the answer's probability comes back.
//
// The pick is the layer whose restored MLP outputs bring back the most probability (the MLP-window
// causal trace): that is where ROME's paper finds the decisive MLPs and where its edits generalise
// best. The ablation argmax and the hidden-state argmax are reported beside it. Layers whose output
// at the subject's position no later layer reads (KV-shared from there on) are marked and never
// picked: an edit there cannot change the answer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "edits/causal_trace.h"

namespace graft {
class Model;
}

namespace graft::edits {

struct CrownScanOptions {
  TraceOptions tracing;  // the corruption of the subject (causal_trace.h): samples, noise, seed
  // Layers restored together in the MLP-window trace; 0: the reference's 10, but at most half the
  // depth, so that a small model's window still says where (10 of 8 layers would restore them all).
  int64_t window = 0;
  bool trace = true;  // false: ablation only (one forward)
};

struct CrownLayer {
  int layer = 0;
  int64_t mlp_width = 0;          // intermediate_size_for_layer(layer)
  double ablated_prob = 0;        // p(expect) with this layer's MLP output zeroed at the subject's last token
  double ablation_delta = 0;      // ablated_prob - baseline_prob (negative: the layer was needed)
  double ablation_log_delta = 0;  // log ablated_prob - log baseline_prob: ranks drops even when p is ~1
  double traced_prob = 0;         // mean p(expect) over the corrupted copies, hidden state restored here
  double indirect_effect = 0;     // traced_prob - corrupted_prob
  double mlp_traced_prob = 0;     // the same with the MLP outputs of [window_first, window_last] restored
  double mlp_indirect_effect = 0;
  int window_first = 0, window_last = 0;
  // false: no later layer reads this position (every layer above takes its K/V from a layer below:
  // Gemma 4's KV sharing), so nothing done here at the subject can reach the answer. Such layers
  // are never picked.
  bool reaches_answer = true;
};

struct CrownScanResult {
  std::string prompt_template, subject;
  std::string prompt;               // the template with the subject in place
  std::vector<std::string> tokens;  // each prompt token as text (BOS included)
  int64_t subject_first = 0, subject_last = 0;

  std::string expect;                   // what was asked for, or the model's answer when not given
  bool expect_is_model_answer = false;  // true: --expect was not given
  int64_t expect_token = 0;             // the token scored: the first token of `expect` after the prompt
  std::string expect_token_text;
  int64_t expect_token_count = 1;  // tokens `expect` spans after the prompt (only the first is scored)

  std::string top_token_text;  // the model's own answer on the clean prompt
  double top_prob = 0;
  double baseline_prob = 0;  // p(expect) on the clean prompt
  double baseline_log_prob = 0;
  double corrupted_prob = 0;  // mean p(expect) with the subject corrupted, nothing restored
  double embedding_std = 0;   // sigma: std of the (scaled) token embedding table
  double noise_std = 0;       // noise * sigma

  CrownScanOptions options;
  std::vector<CrownLayer> layers;  // every layer, in order
  int64_t window = 0;              // the MLP window used
  int ablation_layer = 0;          // largest drop of log p(expect) under ablation
  int trace_layer = -1;            // largest hidden-state indirect effect (-1: not traced)
  int mlp_trace_layer = -1;        // largest MLP-window indirect effect (-1: not traced)
  int picked_layer = 0;            // mlp_trace_layer when traced, else ablation_layer
  std::string picked_by;           // which view gave picked_layer, in words
  double seconds = 0;
  int64_t forwards = 0;
};

// `prompt_template` holds "{}" exactly once where the subject goes. `expect`: the answer to watch;
// nullopt: the model's own top-1 next token. InputError naming the argument (prompt, subject,
// expect, samples, noise, window) for bad input.
CrownScanResult crown_scan(const Model& model, const std::string& prompt_template, const std::string& subject,
                           std::optional<std::string> expect, const CrownScanOptions& options = {});

nlohmann::json to_json(const CrownScanResult& result);
nlohmann::json to_json(const TraceOptions& options);
nlohmann::json to_json(const CrownScanOptions& options);
// The human-readable report: header, one row per layer, the picks.
std::string format_crown_scan(const CrownScanResult& result);

}  // namespace graft::edits
