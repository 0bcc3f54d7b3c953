// Second-moment statistics of MLP keys: C = E[k k^T] of `blocks.{i}.mlp.hook_post` (the input of the
// down projection, width intermediate_size_for_layer(i)) over every token of a text corpus. ROME's
// u = C^-1 k and MEMIT's (lambda C + K K^T) both need it. Summed in float64 (KeyMomentSum), streamed
// in batches, saved as safetensors so edits reuse it.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "edits/solve.h"

namespace graft {
class Model;
}

namespace graft::edits {

// The running sum over tokens of k k^T for keys of one width, float64 [width, width] when finished.
// The products are float32 matrix products (float64 when the keys are float64) over at most
// `flush_tokens` tokens at a time, added into the float64 sum and restarted: the float32 rounding
// is that of one product over a bounded number of tokens (about 1e-7 relative to
// sqrt(C_ii C_jj)), while the sum over a whole corpus keeps float64 precision. Only the column
// panels on and above the diagonal are multiplied (about half the products of a full K^T K; the
// lower triangle is mirrored by finish()). Memory: the float64 sum plus float32 panels of about
// half its element count.
class KeyMomentSum {
 public:
  static constexpr int64_t kPanelWidth = 256;
  explicit KeyMomentSum(int64_t width, int64_t flush_tokens = 4096);

  // keys: [..., width], any floating dtype and device (multiplied on the CPU).
  void add(const at::Tensor& keys);
  // Adds the pending float32 products into the float64 sum (add() does it every flush_tokens).
  void flush();
  // The symmetric float64 [width, width] sum of k k^T over every key added; the object is empty
  // (width 0) afterwards.
  at::Tensor finish();

  int64_t width() const { return width_; }
  int64_t tokens() const { return tokens_; }

 private:
  int64_t width_;
  int64_t flush_tokens_;
  int64_t pending_ = 0;  // tokens in the panels, not yet in sum_
  int64_t tokens_ = 0;
  at::Tensor sum_;                  // float64, the panels' part (upper triangle and diagonal blocks)
  std::vector<at::Tensor> panels_;  // panel p: rows [0, end_p) of columns [p * kPanelWidth, end_p)
};

struct StatsOptions {
  std::vector<int> layers;       // empty: every layer
  int64_t max_tokens = 1000000;  // stop after this many tokens
  int64_t window = 256;          // tokens per sequence (longer texts are cut into windows)
  int64_t batch_size = 8;        // sequences per forward pass
  std::function<void(int64_t tokens, int64_t total)> on_progress;
};

nlohmann::json to_json(const StatsOptions& options);  // every field but the progress callback

class KeyStatistics {
 public:
  // Runs the model over `texts` (each encoded with BOS as the editors do) and accumulates k k^T
  // at every real token of the chosen layers. The forward stops after the last chosen layer.
  static KeyStatistics collect(const Model& model, const std::vector<std::string>& texts, const StatsOptions& options);
  // One text per line of a UTF-8 file (blank lines skipped).
  static std::vector<std::string> read_corpus(const std::string& path);

  void save(const std::string& path) const;
  // Loads and checks that the statistics belong to this model (model type, hidden size, and each
  // layer's width); InputError naming the file and layer otherwise.
  static KeyStatistics load(const std::string& path, const Model& model);

  bool has_layer(int layer) const { return sums_.count(layer) > 0; }
  std::vector<int> layers() const;
  // E[k k^T] for a layer, float64 [I, I] on the CPU; InputError naming the layer if not collected.
  at::Tensor second_moment(int layer) const;
  int64_t tokens() const { return tokens_; }
  const std::string& model_type() const { return model_type_; }
  // second_moment(layer), factorised on first use and kept: ROME solves with it once per request.
  const SymmetricSolver& second_moment_solver(int layer) const;

 private:
  std::map<int, at::Tensor> sums_;  // sum of k k^T (float64)
  // Factorisations made so far (shared by copies of these statistics: the sums never change).
  struct Solvers {
    std::mutex mutex;
    std::map<int, std::unique_ptr<const SymmetricSolver>> by_layer;
  };
  std::shared_ptr<Solvers> solvers_ = std::make_shared<Solvers>();
  int64_t tokens_ = 0;
  std::string model_type_;
  int64_t hidden_size_ = 0;
};

}  // namespace graft::edits
