// Loading a model directory: the architecture table, the weights it names, the tokenizer.
#include "core/model.h"

#include <filesystem>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/io/detail.h"
#include "core/rope.h"
#include "core/tensor.h"
#include "core/tokenizer/tokenizer.h"

namespace graft {
namespace fs = std::filesystem;

namespace {

using io::detail::shape_string;

// The floating dtype the checkpoint stores most of its bytes in: the natural compute dtype.
at::ScalarType checkpoint_float_dtype(const io::Checkpoint& checkpoint, const std::vector<arch::TensorSpec>& tensors) {
  std::map<io::DType, size_t> bytes;
  for (const auto& t : tensors) {
    const auto& view = checkpoint.get(t.name);
    if (view.dtype == io::DType::F32 || view.dtype == io::DType::BF16 || view.dtype == io::DType::F16)
      bytes[view.dtype] += view.nbytes;
  }
  io::DType best = io::DType::F32;
  size_t most = 0;
  for (const auto& [dtype, n] : bytes)
    if (n > most) best = dtype, most = n;
  return to_scalar_type(best);
}

}  // namespace

Model::~Model() = default;

std::shared_ptr<Model> Model::load(const std::string& model_dir, const LoadOptions& options) {
  if (!fs::is_directory(model_dir))
    throw InputError(model_dir + ": not a model directory (expected a directory holding config.json and weights)");
  std::shared_ptr<Model> model(new Model());
  model->dir_ = model_dir;
  model->device_ = parse_device(options.device);
  model->arch_ = arch::Architecture::from_model_dir(model_dir);
  model->checkpoint_ = std::make_unique<io::Checkpoint>(io::Checkpoint::open(model_dir));

  // Checkpoints of one family differ in prefix (GPT-2 with or without "transformer."); the
  // architecture renames its table to the prefix this checkpoint uses.
  model->arch_->adopt_checkpoint_prefix(model->checkpoint_->names());
  const std::vector<arch::TensorSpec> expected = model->arch_->expected_tensors();
  for (const auto& t : expected) model->checkpoint_->get(t.name, t.shape);  // all present, all right shapes
  model->dtype_ = options.dtype ? *options.dtype : checkpoint_float_dtype(*model->checkpoint_, expected);

  for (const auto& t : expected) {
    at::Tensor tensor = tensor_from_view(model->checkpoint_->get(t.name));
    // Every floating tensor takes the compute dtype, as HF's `.to(dtype)` does; the norms upcast
    // to float32 internally. A tensor already in that dtype stays a view of the mapped file.
    if (at::isFloatingType(tensor.scalar_type()) && tensor.scalar_type() != model->dtype_)
      tensor = tensor.to(model->dtype_);
    if (model->device_ != tensor.device()) tensor = tensor.to(model->device_);
    model->weights_.emplace(t.name, std::move(tensor));
  }
  model->bind_layer_weights();
  model->compute_rope_frequencies();

  const fs::path tokenizer_json = fs::path(model_dir) / "tokenizer.json";
  if (fs::exists(tokenizer_json)) model->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_model_dir(model_dir));
  return model;
}

void Model::compute_rope_frequencies() {
  std::map<std::string, at::Tensor> by_key;
  for (const arch::LayerSpec& layer : spec().layers) {
    const arch::RopeSpec& rope = layer.rope;
    at::Tensor& frequencies = rope_frequencies_.emplace_back();
    if (rope.kind == arch::RopeKind::None || rope.kind == arch::RopeKind::Dynamic) continue;
    auto [it, fresh] = by_key.try_emplace(rope_key(rope));
    if (fresh) it->second = rope_inverse_frequencies(rope, /*sequence_length=*/0).to(device_);
    frequencies = it->second;
  }
}

void Model::bind_layer_weights() {
  auto find = [this](const std::string& name) -> at::Tensor {
    if (name.empty()) return {};
    auto it = weights_.find(name);
    return it == weights_.end() ? at::Tensor() : it->second;
  };
  auto bind = [&](const arch::TensorNames& n) { return TensorWeights{find(n.weight), find(n.bias), n.layout}; };

  const auto& tensors = spec().tensors;
  embed_tokens_ = find(tensors.embed_tokens);
  position_embeddings_ = find(tensors.position_embeddings);
  lm_head_ = find(tensors.lm_head);
  final_norm_ = bind(tensors.final_norm);
  ple_embed_ = find(tensors.ple_embed);
  ple_model_projection_ = find(tensors.ple_model_projection);
  ple_projection_norm_ = bind(tensors.ple_projection_norm);

  layers_.clear();
  for (const auto& layer : spec().layers) {
    LayerWeights& w = layers_.emplace_back();
    for (const arch::TensorRoleInfo& role : arch::kTensorRoles) w[role.role] = bind(layer.tensors[role.role]);
  }
}

const Tokenizer& Model::require_tokenizer() const {
  if (!tokenizer_) throw InputError(dir_ + ": no tokenizer.json in the model directory");
  return *tokenizer_;
}

at::Tensor& Model::weight(const std::string& name) {
  auto it = weights_.find(name);
  if (it == weights_.end()) throw InputError("tensor \"" + name + "\" is not a weight this model uses (" + dir_ + ")");
  return it->second;
}

const at::Tensor& Model::weight(const std::string& name) const { return const_cast<Model*>(this)->weight(name); }

int64_t Model::weight_bytes() const {
  int64_t total = 0;
  for (const auto& [name, tensor] : weights_) total += tensor.numel() * tensor.element_size();
  return total;
}

// ---------------------------------------------------------------------------------------------
// KV cache

KVCache::KVCache(const Model& model, int64_t batch_size, int64_t capacity)
    : batch_size_(batch_size), capacity_(std::max<int64_t>(capacity, 1)) {
  options_ = at::TensorOptions().dtype(model.dtype()).device(model.device());
  const auto& layers = model.spec().layers;
  keys_.resize(layers.size());
  values_.resize(layers.size());
  for (const auto& layer : layers) {
    if (layer.is_kv_shared()) continue;
    keys_[layer.index] = at::zeros({batch_size_, layer.num_kv_heads, capacity_, layer.head_dim}, options_);
    values_[layer.index] = at::zeros({batch_size_, layer.num_kv_heads, capacity_, layer.head_dim}, options_);
  }
  key_mask_ = at::ones({batch_size_, 0}, at::TensorOptions().dtype(at::kBool).device(model.device()));
}

int64_t KVCache::bytes() const {
  int64_t total = 0;
  for (size_t i = 0; i < keys_.size(); ++i)
    if (keys_[i].defined()) total += 2 * keys_[i].numel() * keys_[i].element_size();
  return total;
}

void KVCache::grow(int64_t needed) {
  int64_t capacity = capacity_;
  while (capacity < needed) capacity *= 2;
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (!keys_[i].defined()) continue;
    auto enlarge = [&](const at::Tensor& old) {
      auto sizes = old.sizes().vec();
      sizes[2] = capacity;
      at::Tensor bigger = at::zeros(sizes, options_);
      bigger.narrow(2, 0, length_).copy_(old.narrow(2, 0, length_));
      return bigger;
    };
    keys_[i] = enlarge(keys_[i]);
    values_[i] = enlarge(values_[i]);
  }
  capacity_ = capacity;
}

std::pair<at::Tensor, at::Tensor> KVCache::append(int layer, const at::Tensor& k, const at::Tensor& v) {
  const int64_t steps = k.size(2);
  if (k.size(0) != batch_size_)
    throw InputError("KV cache was made for batch size " + std::to_string(batch_size_) + ", got " +
                     std::to_string(k.size(0)));
  if (length_ + steps > capacity_) grow(length_ + steps);
  keys_[layer].narrow(2, length_, steps).copy_(k);
  values_[layer].narrow(2, length_, steps).copy_(v);
  return view(layer, length_ + steps);
}

std::pair<at::Tensor, at::Tensor> KVCache::view(int layer, int64_t total) const {
  return {keys_[layer].narrow(2, 0, total), values_[layer].narrow(2, 0, total)};
}

void KVCache::commit(int64_t new_tokens, const at::Tensor& new_key_mask) {
  length_ += new_tokens;
  key_mask_ = new_key_mask;
}

}  // namespace graft
