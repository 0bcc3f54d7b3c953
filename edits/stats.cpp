#include "edits/stats.h"

#include <algorithm>
#include <fstream>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hooks.h"
#include "core/io/safetensors.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/batch.h"
#include "edits/layers.h"
#include "edits/tokens.h"

namespace graft::edits {
namespace {

// Every layer when none is given.
std::vector<int> resolve_layers(const Model& model, std::vector<int> layers) {
  if (layers.empty())
    for (int i = 0; i < model.arch().num_layers(); ++i) layers.push_back(i);
  return checked_layers(model, std::move(layers));
}

// Cuts the corpus into token windows (every window starts with BOS, as edit prompts do).
std::vector<std::vector<int64_t>> token_windows(const Model& model, const std::vector<std::string>& texts,
                                                int64_t window, int64_t max_tokens) {
  std::vector<std::vector<int64_t>> windows;
  int64_t total = 0;
  for (const auto& text : texts) {
    const std::vector<int64_t> ids = encode_prompt(model, text);
    for (size_t start = 0; start < ids.size() && total < max_tokens; start += static_cast<size_t>(window)) {
      const size_t end = std::min(ids.size(), start + static_cast<size_t>(window));
      const int64_t take = std::min<int64_t>(static_cast<int64_t>(end - start), max_tokens - total);
      windows.emplace_back(ids.begin() + static_cast<long>(start), ids.begin() + static_cast<long>(start + take));
      total += take;
    }
    if (total >= max_tokens) break;
  }
  return windows;
}

}  // namespace

KeyMomentSum::KeyMomentSum(int64_t width, int64_t flush_tokens)
    : width_(width), flush_tokens_(std::max<int64_t>(1, flush_tokens)) {
  if (width < 1) throw InputError("key statistics: width must be at least 1");
  sum_ = at::zeros({width, width}, at::TensorOptions().dtype(at::kDouble));
}

void KeyMomentSum::add(const at::Tensor& keys) {
  if (width_ == 0) throw Error("KeyMomentSum: add() after finish()");
  if (keys.dim() < 1 || keys.size(-1) != width_)
    throw InputError("key statistics: keys of width " + std::to_string(keys.dim() ? keys.size(-1) : 0) + ", expected " +
                     std::to_string(width_));
  const at::ScalarType type = keys.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor k = keys.detach().reshape({-1, width_}).to(at::kCPU, type).contiguous();
  if (panels_.empty() || panels_.front().scalar_type() != type) {
    flush();
    panels_.clear();
    for (int64_t start = 0; start < width_; start += kPanelWidth) {
      const int64_t end = std::min(width_, start + kPanelWidth);
      panels_.push_back(at::empty({end, end - start}, at::TensorOptions().dtype(type)));
    }
  }
  for (int64_t first = 0; first < k.size(0);) {
    if (pending_ >= flush_tokens_) flush();
    const int64_t rows = std::min(k.size(0) - first, flush_tokens_ - pending_);
    const at::Tensor chunk = k.narrow(0, first, rows);
    for (size_t p = 0; p < panels_.size(); ++p) {
      at::Tensor& panel = panels_[p];
      const int64_t start = static_cast<int64_t>(p) * kPanelWidth, end = panel.size(0);
      // panel += K[:, :end]^T K[:, start:end]; beta 0 after a flush (the panel then holds garbage).
      const at::Tensor a = chunk.narrow(1, 0, end).t(), b = chunk.narrow(1, start, end - start);
      if (pending_ == 0) at::mm_out(panel, a, b);
      else panel.addmm_(a, b);
    }
    pending_ += rows;
    tokens_ += rows;
    first += rows;
  }
}

void KeyMomentSum::flush() {
  if (pending_ == 0) return;
  for (size_t p = 0; p < panels_.size(); ++p) {
    const int64_t start = static_cast<int64_t>(p) * kPanelWidth, end = panels_[p].size(0);
    sum_.narrow(0, 0, end).narrow(1, start, end - start).add_(panels_[p]);
  }
  pending_ = 0;
}

at::Tensor KeyMomentSum::finish() {
  if (width_ == 0) throw Error("KeyMomentSum: finish() twice");
  flush();
  panels_.clear();
  for (int64_t start = 0; start < width_; start += kPanelWidth) {
    const int64_t n = std::min(width_, start + kPanelWidth) - start;
    // Below the diagonal blocks: the transpose of what is above them.
    if (start > 0) sum_.narrow(0, start, n).narrow(1, 0, start).copy_(sum_.narrow(0, 0, start).narrow(1, start, n).t());
    // Diagonal blocks were multiplied whole; make them exactly symmetric.
    at::Tensor block = sum_.narrow(0, start, n).narrow(1, start, n);
    block.copy_((block + block.t()) * 0.5);
  }
  at::Tensor out = std::move(sum_);
  sum_ = at::Tensor();
  width_ = 0;
  return out;
}

std::vector<std::string> KeyStatistics::read_corpus(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError("--corpus " + path + ": cannot open");
  std::vector<std::string> texts;
  for (std::string line; std::getline(in, line);)
    if (line.find_first_not_of(" \t\r") != std::string::npos) texts.push_back(line);
  if (texts.empty()) throw InputError("--corpus " + path + ": no text");
  return texts;
}

nlohmann::json to_json(const StatsOptions& o) {
  return {{"layers", o.layers}, {"max_tokens", o.max_tokens}, {"window", o.window}, {"batch_size", o.batch_size}};
}

KeyStatistics KeyStatistics::collect(const Model& model, const std::vector<std::string>& texts,
                                     const StatsOptions& options) {
  if (options.window < 2) throw InputError("window: must be at least 2 tokens");
  if (options.batch_size < 1) throw InputError("batch size: must be at least 1");
  const std::vector<int> layers = resolve_layers(model, options.layers);
  KeyStatistics stats;
  stats.model_type_ = model.spec().model_type;
  stats.hidden_size_ = model.spec().hidden_size;
  std::map<int, KeyMomentSum> sums;
  for (int layer : layers) sums.emplace(layer, KeyMomentSum(model.arch().intermediate_size_for_layer(layer)));

  const auto windows = token_windows(model, texts, options.window, options.max_tokens);
  int64_t total = 0;
  for (const auto& w : windows) total += static_cast<int64_t>(w.size());

  at::NoGradGuard no_grad;
  for (size_t begin = 0; begin < windows.size(); begin += static_cast<size_t>(options.batch_size)) {
    const size_t end = std::min(windows.size(), begin + static_cast<size_t>(options.batch_size));
    const PaddedBatch batch = pad_right(model,
                                        std::vector<std::vector<int64_t>>(windows.begin() + static_cast<long>(begin),
                                                                          windows.begin() + static_cast<long>(end)));
    const at::Tensor& ids = batch.ids;
    const at::Tensor& mask = batch.mask;
    // Right padding: real tokens never attend to padding, and padding rows are dropped below.
    const at::Tensor real = mask.flatten().nonzero().squeeze(-1).to(model.device());
    Hooks hooks(model.arch().num_layers());
    for (int layer : layers) {
      KeyMomentSum& sum = sums.at(layer);
      hooks.add({HookPoint::MlpPost, layer},
                [&sum, &real](const at::Tensor& keys, const HookName&) -> std::optional<at::Tensor> {
                  sum.add(keys.reshape({-1, keys.size(-1)}).index_select(0, real));
                  return std::nullopt;
                });
    }
    ForwardOptions forward;
    forward.attention_mask = mask;
    forward.hooks = &hooks;
    forward.stop_after_layers = layers.back() + 1;
    model.forward(ids, forward);
    stats.tokens_ += real.numel();
    if (options.on_progress) options.on_progress(stats.tokens_, total);
  }
  if (stats.tokens_ == 0) throw InputError("statistics: the corpus produced no tokens");
  for (auto& [layer, sum] : sums) stats.sums_[layer] = sum.finish();
  return stats;
}

std::vector<int> KeyStatistics::layers() const {
  std::vector<int> out;
  for (const auto& [layer, sum] : sums_) out.push_back(layer);
  return out;
}

at::Tensor KeyStatistics::second_moment(int layer) const {
  auto it = sums_.find(layer);
  if (it == sums_.end()) {
    std::string have;
    for (int l : layers()) have += (have.empty() ? "" : ", ") + std::to_string(l);
    throw InputError("statistics: layer " + std::to_string(layer) + " was not collected (have: " + have +
                     "); run `graft stats` with --layers including it");
  }
  return it->second / static_cast<double>(tokens_);
}

const SymmetricSolver& KeyStatistics::second_moment_solver(int layer) const {
  const at::Tensor c = second_moment(layer);  // checks the layer first
  std::lock_guard<std::mutex> lock(solvers_->mutex);
  auto& solver = solvers_->by_layer[layer];
  if (!solver) solver = std::make_unique<const SymmetricSolver>(c);
  return *solver;
}

void KeyStatistics::save(const std::string& path) const {
  std::vector<io::TensorToWrite> tensors;
  std::vector<at::Tensor> keep;
  nlohmann::json widths = nlohmann::json::object();
  for (const auto& [layer, sum] : sums_) {
    keep.push_back(sum.contiguous());
    tensors.push_back({"layers." + std::to_string(layer) + ".sum_kkT", io::DType::F64, sum.sizes().vec(),
                       keep.back().data_ptr(), static_cast<size_t>(sum.numel()) * sizeof(double)});
    widths[std::to_string(layer)] = sum.size(0);
  }
  const nlohmann::json header = {{"format", "graft-key-statistics"},
                                 {"version", 1},
                                 {"model_type", model_type_},
                                 {"hidden_size", hidden_size_},
                                 {"tokens", tokens_},
                                 {"widths", widths},
                                 {"statistic", "sum over tokens of k k^T, k = blocks.{i}.mlp.hook_post"}};
  io::write_safetensors(path, tensors, {{"graft", header.dump()}});
}

KeyStatistics KeyStatistics::load(const std::string& path, const Model& model) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  const auto it = file.metadata().find("graft");
  if (it == file.metadata().end()) throw InputError(path + ": not a graft statistics file (no \"graft\" metadata)");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(path + ": statistics header is not JSON (" + e.what() + ")");
  }
  if (header.value("format", "") != "graft-key-statistics" || header.value("version", 0) != 1)
    throw FormatError(path + ": not a graft statistics file of version 1");
  KeyStatistics stats;
  stats.model_type_ = header.value("model_type", "");
  stats.hidden_size_ = header.value("hidden_size", int64_t{0});
  stats.tokens_ = header.value("tokens", int64_t{0});
  if (stats.model_type_ != model.spec().model_type || stats.hidden_size_ != model.spec().hidden_size)
    throw InputError(path + ": statistics were collected on a " + stats.model_type_ + " model with hidden size " +
                     std::to_string(stats.hidden_size_) + ", not on this model (" + model.dir() + ")");
  if (stats.tokens_ <= 0) throw FormatError(path + ": statistics over no tokens");
  for (const auto& name : file.names()) {
    const std::string prefix = "layers.", suffix = ".sum_kkT";
    if (name.rfind(prefix, 0) != 0 || name.size() <= prefix.size() + suffix.size()) continue;
    const int layer = std::stoi(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
    const int64_t width = model.arch().intermediate_size_for_layer(layer);
    const auto& view = file.get(name);
    if (view.dtype != io::DType::F64 || view.shape != std::vector<int64_t>{width, width})
      throw InputError(path + ": layer " + std::to_string(layer) +
                       " statistics have shape/dtype unlike the model's MLP width " + std::to_string(width));
    stats.sums_[layer] = tensor_from_view(view).clone();
  }
  if (stats.sums_.empty()) throw FormatError(path + ": no layer statistics in the file");
  return stats;
}

}  // namespace graft::edits
