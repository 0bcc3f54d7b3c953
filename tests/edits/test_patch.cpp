// Patch files: SHA-256, the format (round trip, corruption, the torch-free reader), in-memory
// apply/revert (bit-exact, and the same bits as an editor's TemporaryUpdates), and patched model
// directories (apply, stack, revert, verify, shards, GPT-2 layout, failures).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/io/sha256.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/patch.h"
#include "edits/patch_format.h"
#include "edits/weight_update.h"

namespace graft::edits {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

const std::string kFixtures = std::string(GRAFT_TEST_DATA) + "/hf-parity/";
const std::string kGemma4 = kFixtures + "gemma4_e2b_like";  // layers 4..7 are double-wide (192 vs 96)
const std::string kLlama = kFixtures + "llama3";
const std::string kGpt2 = kFixtures + "gpt2";  // Conv1D: c_proj stored [in, out]
const std::string kFacts = std::string(GRAFT_MODELS_DIR) + "/gemma4_facts";
const std::string kPatchCorpus = std::string(GRAFT_TEST_DATA) + "/../fuzz/corpus/patch";
// On disk W' = W + dW is computed in float64 and rounded once to float32: half an ulp.
const double kDiskEps = std::ldexp(1.0, -24);
// In memory the float32 sum rounds dW and then W + dW: two half ulps.
const double kMemoryEps = std::ldexp(1.0, -23);

// ----- helpers -----

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("graft_patch_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string copy_model(const std::string& from, const TempDir& tmp, const std::string& name = "model") {
  const std::string to = tmp / name;
  fs::create_directories(to);
  for (const auto& entry : fs::directory_iterator(from))
    if (entry.path().extension() != ".safetensors" || entry.path().filename() == "model.safetensors")
      fs::copy_file(entry.path(), fs::path(to) / entry.path().filename());
  return to;
}

std::map<std::string, std::string> file_hashes(const std::string& dir) {
  std::map<std::string, std::string> hashes;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file())
      hashes[fs::relative(entry.path(), dir).string()] = io::sha256_file_hex(entry.path().string());
  return hashes;
}

// A stored tensor read fresh from a directory (owning copy).
at::Tensor stored(const std::string& dir, const std::string& name) {
  const auto checkpoint = io::Checkpoint::open(dir);
  return tensor_from_view(checkpoint.get(name)).clone();
}

TensorUpdate low_rank(const Model& model, int layer, int64_t rank, uint64_t seed, double scale = 0.05) {
  at::manual_seed(seed);
  const int64_t out = model.arch().hidden_size(), in = model.arch().intermediate_size_for_layer(layer);
  return {model.arch().mlp_down_projection(layer).weight, layer, at::randn({out, rank}) * scale, at::randn({in, rank}),
          at::Tensor()};
}

TensorUpdate dense(const Model& model, int layer, uint64_t seed, double scale = 0.01) {
  at::manual_seed(seed);
  const int64_t out = model.arch().hidden_size(), in = model.arch().intermediate_size_for_layer(layer);
  return {model.arch().mlp_down_projection(layer).weight, layer, at::Tensor(), at::Tensor(),
          at::randn({out, in}) * scale};
}

PatchProvenance provenance(const std::string& method = "test") {
  return {method,
          {{"seed", 1}, {"scale", 0.05}},
          Json::array({{{"prompt", "The capital of X is"}, {"target", " Y"}}}),
          "synthetic"};
}

at::Tensor logits(const Model& model) {
  const at::Tensor ids = at::arange(1, 9, at::kLong).unsqueeze(0);
  return model.forward(ids).clone();
}

// actual == base + delta within rounding, elementwise: |actual - (base + delta)| <= eps * (|base| + |delta|).
// (Scaled by the operands, not the sum, which may cancel to nearly nothing.)
bool within_rounding(const at::Tensor& actual, const at::Tensor& base, const at::Tensor& delta, double eps) {
  const at::Tensor b = base.to(at::kDouble), d = delta.to(at::kDouble);
  return at::le((actual.to(at::kDouble) - (b + d)).abs(), (b.abs() + d.abs()) * eps + 1e-30).all().item<bool>();
}

// A row-major Eigen matrix as a tensor over its memory (no copy).
at::Tensor tensor_of(const float* data, int64_t rows, int64_t cols) {
  return at::from_blob(const_cast<float*>(data), {rows, cols}, at::kFloat);
}
at::Tensor tensor_of(const DoubleMatrix& m) {
  return at::from_blob(const_cast<double*>(m.data()), {m.rows(), m.cols()}, at::kDouble);
}

// The torch-free reader's entry holds what Patch::load's holds: the same header fields, the same
// factor bits, and the same float64 dW, bit for bit where both are exact (rank 1, dense) and within
// the rounding of an r-term float64 sum otherwise (Eigen and the BLAS may sum in other orders).
void expect_same_entry(const PatchFileEntry& f, const PatchEntry& t) {
  EXPECT_EQ(entry_json(f), entry_json(t));
  if (f.kind == UpdateKind::LowRank) {
    EXPECT_TRUE(at::equal(tensor_of(f.left.data, f.left.rows, f.left.cols), t.left)) << f.tensor;
    EXPECT_TRUE(at::equal(tensor_of(f.right.data, f.right.rows, f.right.cols), t.right)) << f.tensor;
  } else {
    EXPECT_TRUE(at::equal(tensor_of(f.dense.data, f.dense.rows, f.dense.cols), t.dense)) << f.tensor;
  }
  const DoubleMatrix logical = f.logical_delta(), stored = f.stored_delta();
  if (f.rank <= 1) {
    EXPECT_TRUE(at::equal(tensor_of(logical), t.logical_delta())) << f.tensor;
    EXPECT_TRUE(at::equal(tensor_of(stored), t.stored_delta())) << f.tensor;
  } else {
    const at::Tensor magnitude = at::matmul(t.left.abs().to(at::kDouble), t.right.abs().to(at::kDouble).t());
    const at::Tensor allowed = magnitude * (static_cast<double>(f.rank) * std::ldexp(1.0, -52));
    EXPECT_TRUE(at::le((tensor_of(logical) - t.logical_delta()).abs(), allowed).all().item<bool>()) << f.tensor;
    const at::Tensor allowed_stored = logical_to_stored(allowed, f.layout);
    EXPECT_TRUE(at::le((tensor_of(stored) - t.stored_delta()).abs(), allowed_stored).all().item<bool>()) << f.tensor;
  }
}

// Rewrites a patch file's header through `edit`, keeping the body.
void rewrite_header(const std::string& path, const std::function<void(Json&)>& edit) {
  const auto file = io::SafetensorsFile::open(path);
  Json header = Json::parse(file.metadata().at(kPatchMetadataKey));
  edit(header);
  std::vector<io::TensorToWrite> tensors;
  for (const auto& v : file.tensors()) tensors.push_back({v.name, v.dtype, v.shape, v.data, v.nbytes});
  io::write_safetensors(path, tensors, {{kPatchMetadataKey, header.dump()}});
}

// ----- SHA-256 -----

TEST(Sha256, FipsTestVectors) {
  EXPECT_EQ(io::Sha256::hex_of(std::string("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(io::Sha256::hex_of(std::string()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(io::Sha256::hex_of(std::string("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(io::Sha256::hex_of(
                std::string("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnop"
                            "qklmnopqrlmnopqrsmnopqrstnopqrstu")),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, StreamingInUnevenPiecesMatchesOneShot) {
  const std::string million(1000000, 'a');
  io::Sha256 sha;
  size_t done = 0, piece = 1;
  while (done < million.size()) {
    const size_t n = std::min(piece, million.size() - done);
    sha.update(million.data() + done, n);
    done += n;
    piece = piece * 3 % 1000 + 1;  // 1, 4, 13, ...: crosses block boundaries at every offset
  }
  EXPECT_EQ(io::Sha256::hex(sha.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_THROW(sha.finish(), Error);
}

// ----- the file format -----

TEST(PatchFormat, SaveLoadRoundTripKeepsEveryField) {
  TempDir tmp;
  const auto model = Model::load(kGemma4);
  auto patch = Patch::create(*model, {low_rank(*model, 5, 2, 1), dense(*model, 1, 2)}, provenance("rome"));
  patch.save(tmp / "p.safetensors");
  const Patch loaded = Patch::load(tmp / "p.safetensors");

  EXPECT_EQ(loaded.checksum(), patch.checksum());
  EXPECT_EQ(loaded.header(), patch.header());
  EXPECT_EQ(loaded.source(), tmp / "p.safetensors");
  EXPECT_EQ(loaded.provenance().method, "rome");
  EXPECT_EQ(loaded.provenance().requests[0]["target"], " Y");
  EXPECT_EQ(loaded.provenance().hyperparameters["seed"], 1);
  EXPECT_EQ(loaded.base().model_type, "gemma4_text");
  EXPECT_EQ(loaded.base().family, "gemma4");
  ASSERT_EQ(loaded.entries().size(), 2u);
  const PatchEntry& wide = loaded.entries()[0];
  EXPECT_EQ(wide.tensor, "model.layers.5.mlp.down_proj.weight");
  EXPECT_EQ(wide.layer, 5);
  EXPECT_EQ(wide.kind, UpdateKind::LowRank);
  EXPECT_EQ(wide.rank, 2);
  EXPECT_EQ(wide.shape, (std::vector<int64_t>{64, 192}));  // double-wide layer
  EXPECT_EQ(wide.layout, arch::WeightLayout::OutIn);
  EXPECT_TRUE(at::equal(wide.left, patch.entries()[0].left));
  EXPECT_TRUE(at::equal(wide.right, patch.entries()[0].right));
  EXPECT_EQ(loaded.entries()[1].kind, UpdateKind::Dense);
  EXPECT_EQ(loaded.entries()[1].shape, (std::vector<int64_t>{64, 96}));
  EXPECT_TRUE(at::equal(loaded.entries()[1].dense, patch.entries()[1].dense));

  // The fingerprint is the SHA-256 of the stored bytes, computed independently here.
  const auto checkpoint = io::Checkpoint::open(kGemma4);
  const auto& view = checkpoint.get(wide.tensor);
  EXPECT_EQ(loaded.base().tensors.at(wide.tensor).sha256, io::Sha256::hex_of(view.data, view.nbytes));
  EXPECT_EQ(loaded.base().tensors.at(wide.tensor).dtype, "F32");

  // Any safetensors reader sees the body and one JSON header string.
  const auto file = io::SafetensorsFile::open(tmp / "p.safetensors");
  EXPECT_EQ(file.names(), (std::vector<std::string>{wide.tensor + ".left", wide.tensor + ".right",
                                                    "model.layers.1.mlp.down_proj.weight.delta"}));
  const Json header = Json::parse(file.metadata().at("graft.patch"));
  EXPECT_EQ(header["format"], "graft.patch");
  EXPECT_EQ(header["format_version"], kPatchFormatVersion);
  EXPECT_EQ(header["body_sha256"], patch.checksum());
  EXPECT_EQ(header["entries"][0]["layout"], "out_in");
  EXPECT_FALSE(header["created"].get<std::string>().empty());
}

TEST(PatchFormat, CreateRefusesWrongWidthNaNAndOtherTensors) {
  const auto model = Model::load(kGemma4);
  TensorUpdate narrow = low_rank(*model, 5, 1, 1);
  narrow.right = at::randn({96, 1});  // layer 5 is 192 wide
  try {
    Patch::create(*model, {narrow}, provenance());
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("192"), std::string::npos) << e.what();
  }
  TensorUpdate wide_dense = dense(*model, 2, 1);
  wide_dense.dense = at::zeros({64, 192});  // layer 2 is 96 wide
  EXPECT_THROW(Patch::create(*model, {wide_dense}, provenance()), InputError);

  TensorUpdate nan = low_rank(*model, 1, 1, 1);
  nan.left[3][0] = std::nan("");
  EXPECT_THROW(Patch::create(*model, {nan}, provenance()), InputError);
  TensorUpdate inf = dense(*model, 1, 1);
  inf.dense[0][0] = INFINITY;
  EXPECT_THROW(Patch::create(*model, {inf}, provenance()), InputError);

  TensorUpdate both = low_rank(*model, 1, 1, 1);
  both.dense = at::zeros({64, 96});
  EXPECT_THROW(Patch::create(*model, {both}, provenance()), InputError);
  TensorUpdate not_down = low_rank(*model, 1, 1, 1);
  not_down.tensor = "model.layers.1.mlp.up_proj.weight";
  EXPECT_THROW(Patch::create(*model, {not_down}, provenance()), InputError);
  EXPECT_THROW(Patch::create(*model, {low_rank(*model, 1, 1, 1), low_rank(*model, 1, 1, 2)}, provenance()), InputError);
  EXPECT_THROW(Patch::create(*model, {}, provenance()), InputError);
}

TEST(PatchFormat, CorruptTruncatedOrFutureFilesAreRefused) {
  TempDir tmp;
  const auto model = Model::load(kGemma4);
  const auto patch = Patch::create(*model, {low_rank(*model, 5, 1, 1)}, provenance());
  const std::string path = tmp / "p.safetensors";
  patch.save(path);
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write_bytes = [&](const std::string& target, const std::string& content) {
    std::ofstream(target, std::ios::binary | std::ios::trunc) << content;
  };
  auto expect_format_error = [](const std::string& file, const std::string& words) {
    try {
      Patch::load(file);
      ADD_FAILURE() << file << ": expected FormatError mentioning " << words;
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
  };

  std::string flipped = bytes;
  flipped[bytes.size() - 5] ^= 0x01;  // one bit of the body
  write_bytes(tmp / "flipped.safetensors", flipped);
  expect_format_error(tmp / "flipped.safetensors", "checksum");

  write_bytes(tmp / "truncated.safetensors", bytes.substr(0, bytes.size() - 100));
  EXPECT_THROW(Patch::load(tmp / "truncated.safetensors"), FormatError);

  fs::copy_file(path, tmp / "future.safetensors");
  rewrite_header(tmp / "future.safetensors", [](Json& h) { h["format_version"] = kPatchFormatVersion + 1; });
  expect_format_error(tmp / "future.safetensors", "newer graft");

  fs::copy_file(path, tmp / "noshape.safetensors");
  rewrite_header(tmp / "noshape.safetensors", [](Json& h) { h["entries"][0]["shape"] = {64, 96}; });
  expect_format_error(tmp / "noshape.safetensors", "shape");

  fs::copy_file(path, tmp / "sum.safetensors");
  rewrite_header(tmp / "sum.safetensors", [](Json& h) { h["body_sha256"] = std::string(64, '0'); });
  expect_format_error(tmp / "sum.safetensors", "checksum");

  io::write_safetensors(tmp / "plain.safetensors", {});
  expect_format_error(tmp / "plain.safetensors", "graft.patch");
  EXPECT_THROW(Patch::load(tmp / "missing.safetensors"), InputError);
}

// ----- the torch-free reader (edits/patch_format.h) -----

TEST(PatchFormat, TheTorchFreeReaderSeesWhatPatchLoadSees) {
  TempDir tmp;
  for (const std::string& dir : {kGemma4, kGpt2}) {
    const auto model = Model::load(dir);
    const auto patch = Patch::create(*model,
                                     {low_rank(*model, 1, 1, 1), low_rank(*model, 2, 3, 2), dense(*model, 0, 3)},
                                     provenance("rome"));
    const std::string path = tmp / "p.safetensors";
    patch.save(path);
    const Patch loaded = Patch::load(path);
    const PatchFile file = PatchFile::open(path);
    EXPECT_EQ(file.path(), path);
    EXPECT_EQ(file.checksum(), patch.checksum());
    EXPECT_EQ(file.created(), loaded.created());
    EXPECT_EQ(file.graft_version(), loaded.graft_version());
    EXPECT_EQ(file.provenance().requests, loaded.provenance().requests);
    EXPECT_EQ(base_json(file.base()), base_json(loaded.base()));
    ASSERT_EQ(file.entries().size(), 3u);
    for (size_t i = 0; i < 3; ++i) expect_same_entry(file.entries()[i], loaded.entries()[i]);
    if (dir == kGpt2) EXPECT_EQ(file.entries()[0].stored_delta().rows(), 256);  // Conv1D: [in, out]
  }
}

TEST(PatchFormat, UnalignedBodyTensorsAreReadThroughACopy) {
  TempDir tmp;
  const auto model = Model::load(kGemma4);
  const auto patch = Patch::create(*model, {low_rank(*model, 5, 2, 1), dense(*model, 1, 2)}, provenance());
  patch.save(tmp / "p.safetensors");
  std::string bytes;
  {
    std::ifstream in(tmp / "p.safetensors", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  // One more space at the end of the safetensors header moves the data to an odd address: still a
  // valid file, but no float in it can be read in place.
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  bytes.insert(8 + length, " ");
  ++length;
  std::memcpy(bytes.data(), &length, 8);
  std::ofstream(tmp / "odd.safetensors", std::ios::binary) << bytes;

  const PatchFile file = PatchFile::open(tmp / "odd.safetensors");
  const Patch loaded = Patch::load(tmp / "odd.safetensors");
  EXPECT_EQ(file.checksum(), patch.checksum());
  for (size_t i = 0; i < 2; ++i) {
    const PatchFileEntry& e = file.entries()[i];
    const float* data = e.kind == UpdateKind::LowRank ? e.left.data : e.dense.data;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % alignof(float), 0u);
    expect_same_entry(e, patch.entries()[i]);
    expect_same_entry(e, loaded.entries()[i]);
  }
}

TEST(PatchFormat, FuzzSeedCorpusHoldsValidPatches) {
  // tests/fuzz/corpus/patch seeds fuzz_patch; a seed the reader refuses would fuzz only the first checks.
  int valid = 0;
  for (const auto& entry : fs::directory_iterator(kPatchCorpus)) {
    const std::string path = entry.path().string();
    EXPECT_NO_THROW(PatchFile::open(path)) << path;
    EXPECT_NO_THROW(Patch::load(path)) << path;
    EXPECT_LE(fs::file_size(entry.path()), 8192u) << path << ": longer than the fuzz run's -max_len";
    ++valid;
  }
  EXPECT_GE(valid, 3);
}

// ----- in memory -----

TEST(PatchInMemory, ApplyThenRevertRestoresTheBytesAndTheLogits) {
  auto model = Model::load(kGemma4);
  const auto patch = Patch::create(*model, {low_rank(*model, 5, 1, 1, 0.5), dense(*model, 2, 2, 0.1)}, provenance());
  const at::Tensor before5 = model->weight("model.layers.5.mlp.down_proj.weight").clone();
  const at::Tensor before2 = model->weight("model.layers.2.mlp.down_proj.weight").clone();
  const at::Tensor logits_before = logits(*model);

  PatchStack stack(*model);
  stack.apply(patch);
  const at::Tensor& w5 = model->weight("model.layers.5.mlp.down_proj.weight");
  EXPECT_TRUE(within_rounding(w5, before5, patch.entries()[0].logical_delta(), kMemoryEps));
  EXPECT_FALSE(at::equal(w5, before5));
  const at::Tensor logits_patched = logits(*model);
  EXPECT_GT((logits_patched - logits_before).abs().max().item<double>(), 1e-3);
  // The forward pass reads the same tensors the stack wrote (no stale copies in LayerWeights).
  EXPECT_TRUE(at::equal(model->layer_weights(5)[arch::TensorRole::Down].weight, w5));

  // The file under the copy-on-write mapping is untouched, so the fingerprint still matches.
  EXPECT_EQ(patch_mismatch(*model, patch), "");
  EXPECT_THROW(stack.apply(patch), InputError);  // already applied

  stack.revert(patch);
  EXPECT_TRUE(at::equal(model->weight("model.layers.5.mlp.down_proj.weight"), before5));
  EXPECT_TRUE(at::equal(model->weight("model.layers.2.mlp.down_proj.weight"), before2));
  EXPECT_TRUE(at::equal(logits(*model), logits_before));
  EXPECT_TRUE(stack.applied_checksums().empty());
  EXPECT_THROW(stack.revert(patch), InputError);  // not applied any more
}

TEST(PatchInMemory, StackedPatchesRevertInReverseOrderOrWhenDisjoint) {
  auto model = Model::load(kGemma4);
  const std::string t6 = "model.layers.6.mlp.down_proj.weight";
  const auto a = Patch::create(*model, {low_rank(*model, 6, 1, 1)}, provenance("a"));
  const auto b = Patch::create(*model, {low_rank(*model, 6, 3, 2)}, provenance("b"));
  const auto c = Patch::create(*model, {dense(*model, 0, 3)}, provenance("c"));
  const at::Tensor original = model->weight(t6).clone();
  PatchStack stack(*model);
  stack.apply(a);
  const at::Tensor after_a = model->weight(t6).clone();
  stack.apply(b);
  stack.apply(c);
  EXPECT_EQ(stack.applied_checksums(), (std::vector<std::string>{a.checksum(), b.checksum(), c.checksum()}));
  {
    // Two float32 additions in a row: each of W, dA, dB contributes up to two half ulps.
    const at::Tensor w = original.to(at::kDouble), da = a.entries()[0].logical_delta(),
                     db = b.entries()[0].logical_delta();
    const at::Tensor error = (model->weight(t6).to(at::kDouble) - (w + da + db)).abs();
    EXPECT_TRUE(at::le(error, (w.abs() + da.abs() + db.abs()) * 2 * kMemoryEps).all().item<bool>());
  }

  try {
    stack.revert(a);  // b changed the same tensor after a
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("revert that one first"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(stack.is_applied(a));
  stack.revert(c);  // disjoint from everything: any order
  stack.revert(b);
  EXPECT_TRUE(at::equal(model->weight(t6), after_a));
  stack.revert(a);
  EXPECT_TRUE(at::equal(model->weight(t6), original));
}

TEST(PatchInMemory, PatchForAnotherModelIsRefusedAndTheModelIsUnchanged) {
  TempDir tmp;
  auto gemma = Model::load(kGemma4);
  auto llama = Model::load(kLlama);
  const auto llama_patch = Patch::create(*llama, {low_rank(*llama, 1, 1, 1)}, provenance());
  const at::Tensor before = gemma->weight("model.layers.1.mlp.down_proj.weight").clone();
  PatchStack stack(*gemma);
  EXPECT_THROW(stack.apply(llama_patch), InputError);
  EXPECT_TRUE(at::equal(gemma->weight("model.layers.1.mlp.down_proj.weight"), before));

  // Same architecture, other weights: the fingerprint tells them apart.
  const std::string other = copy_model(kGemma4, tmp);
  {
    const auto checkpoint = io::Checkpoint::open(kGemma4);
    std::vector<io::TensorToWrite> tensors;
    at::Tensor changed = tensor_from_view(checkpoint.get("model.layers.1.mlp.down_proj.weight")).clone();
    changed[0][0] += 1.0f;
    for (const auto& v : checkpoint.files()[0].tensors())
      tensors.push_back(v.name == "model.layers.1.mlp.down_proj.weight"
                            ? io::TensorToWrite{v.name, v.dtype, v.shape, changed.data_ptr(), v.nbytes}
                            : io::TensorToWrite{v.name, v.dtype, v.shape, v.data, v.nbytes});
    io::write_safetensors(other + "/model.safetensors", tensors, checkpoint.files()[0].metadata());
  }
  auto sibling = Model::load(other);
  const auto sibling_patch = Patch::create(*sibling, {low_rank(*sibling, 1, 1, 1)}, provenance());
  EXPECT_NE(patch_mismatch(*gemma, sibling_patch).find("fingerprint"), std::string::npos);
  EXPECT_THROW(stack.apply(sibling_patch), InputError);
  EXPECT_TRUE(at::equal(gemma->weight("model.layers.1.mlp.down_proj.weight"), before));
  // A patch on a layer the sibling did not change still fits.
  EXPECT_EQ(patch_mismatch(*gemma, Patch::create(*sibling, {low_rank(*sibling, 2, 1, 1)}, provenance())), "");
}

TEST(PatchInMemory, Gpt2ConvOneDLayoutAddsTheTransposedUpdate) {
  auto model = Model::load(kGpt2);
  const auto patch = Patch::create(*model, {low_rank(*model, 1, 2, 1, 0.5)}, provenance());
  const PatchEntry& e = patch.entries()[0];
  EXPECT_EQ(e.layout, arch::WeightLayout::InOut);
  EXPECT_EQ(e.shape, (std::vector<int64_t>{64, 256}));
  EXPECT_EQ(patch.base().tensors.at(e.tensor).shape, (std::vector<int64_t>{256, 64}));
  at::Tensor& w = model->weight(e.tensor);
  const at::Tensor before = w.clone();
  const at::Tensor logits_before = logits(*model);
  PatchStack stack(*model);
  stack.apply(patch);
  EXPECT_TRUE(within_rounding(w, before, e.logical_delta().t(), kMemoryEps));
  EXPECT_FALSE(at::allclose(logits(*model), logits_before));
  stack.revert_all();
  EXPECT_TRUE(at::equal(w, before));
}

// ----- editors' temporary updates (edits/weight_update.h) -----

// An editor applies its updates (TemporaryUpdates) to see what they do, and `graft eval --method`
// scores the model that way; both must be the model the patch made of those updates gives. On
// low-precision weights the order of roundings shows: rounding dW to bf16 before adding it (as
// TemporaryUpdates once did) changes many elements.
TEST(WeightUpdate, TemporaryUpdatesChangeWeightsExactlyAsThePatchDoes) {
  for (const std::string& dir : {kGemma4, kGpt2}) {
    for (const at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
      LoadOptions options;
      options.dtype = dtype;
      auto model = Model::load(dir, options);
      ASSERT_EQ(model->dtype(), dtype);
      const std::vector<TensorUpdate> updates = {low_rank(*model, 1, 3, 1, 0.5), dense(*model, 0, 2, 0.1)};
      const auto patch = Patch::create(*model, updates, provenance());
      std::map<std::string, at::Tensor> before, by_editor;
      for (const auto& u : updates) before[u.tensor] = model->weight(u.tensor).clone();
      {
        TemporaryUpdates applied(*model);
        for (const auto& u : updates) applied.add(u);
        for (const auto& u : updates) by_editor[u.tensor] = model->weight(u.tensor).clone();
      }
      for (const auto& [name, w] : before) EXPECT_TRUE(at::equal(model->weight(name), w)) << name << ": not restored";
      PatchStack stack(*model);
      stack.apply(patch);
      for (const auto& [name, w] : by_editor) {
        EXPECT_FALSE(at::equal(w, before[name])) << name;
        EXPECT_TRUE(at::equal(model->weight(name), w)) << dir << " " << dtype_string(dtype) << " " << name;
      }
    }
  }
}

// ----- on disk -----

TEST(PatchOnDisk, ApplyWritesANewDirectoryAndRevertGivesTheBaseBackExactly) {
  TempDir tmp;
  const std::string in = copy_model(kGemma4, tmp);
  auto model = Model::load(in);
  const auto patch = Patch::create(*model, {low_rank(*model, 5, 1, 1, 0.5), dense(*model, 2, 2)}, provenance());
  patch.save(tmp / "p.safetensors");
  const Patch loaded = Patch::load(tmp / "p.safetensors");
  const auto hashes_before = file_hashes(in);

  apply_patches_to_directory(in, {loaded}, tmp / "out");
  EXPECT_EQ(file_hashes(in), hashes_before);  // the input is never modified
  for (const auto& e : loaded.entries())
    EXPECT_TRUE(within_rounding(stored(tmp / "out", e.tensor), stored(in, e.tensor), e.stored_delta(), kDiskEps))
        << e.tensor;
  EXPECT_TRUE(at::equal(stored(tmp / "out", "model.layers.3.mlp.down_proj.weight"),
                        stored(in, "model.layers.3.mlp.down_proj.weight")));
  const auto out_hashes = file_hashes(tmp / "out");
  EXPECT_EQ(out_hashes.at("config.json"), hashes_before.at("config.json"));
  EXPECT_TRUE(out_hashes.count("graft_patches.json"));
  const Json record = read_patch_record(tmp / "out");
  EXPECT_EQ(record["applied"][0]["checksum"], loaded.checksum());
  EXPECT_EQ(record["applied"][0]["source"], "p.safetensors");

  // The new directory loads, and its logits are those of the patch applied in memory.
  PatchStack stack(*model);
  stack.apply(loaded);
  EXPECT_TRUE(at::allclose(logits(*Model::load(tmp / "out")), logits(*model), 1e-4, 1e-5));

  const VerifyReport applied = verify_patch_in_directory(tmp / "out", loaded);
  EXPECT_TRUE(applied.belongs && applied.recorded && applied.applied) << applied.mismatch;
  EXPECT_LE(applied.max_error, applied.tolerance);
  const VerifyReport on_base = verify_patch_in_directory(in, loaded);
  EXPECT_TRUE(on_base.belongs);
  EXPECT_FALSE(on_base.applied || on_base.recorded);
  EXPECT_GT(on_base.max_error, on_base.tolerance);

  revert_patch_in_directory(tmp / "out", loaded, tmp / "reverted");
  EXPECT_EQ(file_hashes(tmp / "reverted"), hashes_before);  // bit for bit, no record left
  const VerifyReport reverted = verify_patch_in_directory(tmp / "reverted", loaded);
  EXPECT_TRUE(reverted.belongs);
  EXPECT_FALSE(reverted.applied);
  EXPECT_THROW(revert_patch_in_directory(tmp / "reverted", loaded, tmp / "again"), InputError);
  EXPECT_FALSE(fs::exists(tmp / "again"));
}

TEST(PatchOnDisk, PatchesStackAcrossDirectoriesAndRevertOutOfOrder) {
  TempDir tmp;
  const std::string in = copy_model(kLlama, tmp);
  auto model = Model::load(in);
  const std::string t1 = "model.layers.1.mlp.down_proj.weight";
  const auto a = Patch::create(*model, {low_rank(*model, 1, 1, 1)}, provenance("a"));
  const auto b = Patch::create(*model, {low_rank(*model, 1, 2, 2), dense(*model, 0, 3)}, provenance("b"));
  const at::Tensor base = stored(in, t1).to(at::kDouble);

  apply_patches_to_directory(in, {a}, tmp / "a");
  apply_patches_to_directory(tmp / "a", {b}, tmp / "ab");  // the patched directory still belongs to its base
  const Json record = read_patch_record(tmp / "ab");
  ASSERT_EQ(record["applied"].size(), 2u);
  EXPECT_EQ(record["applied"][0]["checksum"], a.checksum());
  EXPECT_EQ(record["applied"][1]["checksum"], b.checksum());
  EXPECT_EQ(record["applied"][0]["source"], "");  // created in memory, never saved
  {
    // Loaded from the patched directory, the model still takes patches for its base, but not these again.
    auto patched = Model::load(tmp / "ab");
    PatchStack stack(*patched);
    EXPECT_THROW(stack.apply(a), InputError);
    const auto c = Patch::create(*model, {low_rank(*model, 1, 1, 4)}, provenance("c"));
    const at::Tensor before = patched->weight(t1).clone();
    stack.apply(c);
    EXPECT_TRUE(within_rounding(patched->weight(t1), before, c.entries()[0].logical_delta(), kMemoryEps));
    stack.revert(c);
    EXPECT_TRUE(at::equal(patched->weight(t1), before));
  }
  EXPECT_TRUE(within_rounding(stored(tmp / "ab", t1), base,
                              a.entries()[0].stored_delta() + b.entries()[0].stored_delta(), kDiskEps));
  EXPECT_TRUE(verify_patch_in_directory(tmp / "ab", a).applied);
  EXPECT_TRUE(verify_patch_in_directory(tmp / "ab", b).applied);
  EXPECT_THROW(apply_patches_to_directory(tmp / "ab", {a}, tmp / "aba"), InputError);  // already applied

  revert_patch_in_directory(tmp / "ab", a, tmp / "b");  // not the last one: fine on disk
  EXPECT_TRUE(within_rounding(stored(tmp / "b", t1), base, b.entries()[0].stored_delta(), kDiskEps));
  EXPECT_FALSE(verify_patch_in_directory(tmp / "b", a).applied);
  EXPECT_TRUE(verify_patch_in_directory(tmp / "b", b).applied);
  revert_patch_in_directory(tmp / "b", b, tmp / "none");
  EXPECT_EQ(file_hashes(tmp / "none"), file_hashes(in));

  // Both at once, in order, equals one after the other.
  apply_patches_to_directory(in, {a, b}, tmp / "both");
  EXPECT_TRUE(at::equal(stored(tmp / "both", t1), stored(tmp / "ab", t1)));
}

TEST(PatchOnDisk, ShardedCheckpointRewritesOnlyTheShardThatChanges) {
  TempDir tmp;
  const std::string dir = tmp / "sharded";
  fs::create_directories(dir);
  for (const auto* name : {"config.json", "generation_config.json"})
    fs::copy_file(kLlama + "/" + name, dir + "/" + name);
  {
    const auto checkpoint = io::Checkpoint::open(kLlama);
    std::vector<io::TensorToWrite> first, second;
    Json weight_map = Json::object();
    for (const auto& v : checkpoint.files()[0].tensors()) {
      const bool in_second = v.name.find("layers.1.") != std::string::npos ||
                             v.name.find("layers.2.") != std::string::npos;
      (in_second ? second : first).push_back({v.name, v.dtype, v.shape, v.data, v.nbytes});
      weight_map[v.name] = in_second ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
    }
    io::write_safetensors(dir + "/model-00001-of-00002.safetensors", first, {{"format", "pt"}});
    io::write_safetensors(dir + "/model-00002-of-00002.safetensors", second, {{"format", "pt"}});
    std::ofstream(dir + "/model.safetensors.index.json")
        << Json({{"metadata", Json::object()}, {"weight_map", weight_map}}).dump(2);
  }
  auto model = Model::load(dir);
  const auto patch = Patch::create(*model, {low_rank(*model, 2, 1, 1)}, provenance());
  const auto before = file_hashes(dir);
  apply_patches_to_directory(dir, {patch}, tmp / "out");
  const auto after = file_hashes(tmp / "out");
  EXPECT_EQ(file_hashes(dir), before);
  EXPECT_EQ(after.at("model-00001-of-00002.safetensors"), before.at("model-00001-of-00002.safetensors"));
  EXPECT_NE(after.at("model-00002-of-00002.safetensors"), before.at("model-00002-of-00002.safetensors"));
  EXPECT_EQ(after.at("model.safetensors.index.json"), before.at("model.safetensors.index.json"));
  EXPECT_EQ(io::SafetensorsFile::open(tmp / "out/model-00002-of-00002.safetensors").metadata().at("format"), "pt");
  const std::string t = "model.layers.2.mlp.down_proj.weight";
  EXPECT_TRUE(within_rounding(stored(tmp / "out", t), stored(dir, t), patch.entries()[0].stored_delta(), kDiskEps));
  EXPECT_NO_THROW(Model::load(tmp / "out"));
  EXPECT_TRUE(verify_patch_in_directory(tmp / "out", patch).applied);
}

TEST(PatchOnDisk, Gpt2LayoutIsRespectedOnDisk) {
  TempDir tmp;
  const std::string in = copy_model(kGpt2, tmp);
  auto model = Model::load(in);
  const auto patch = Patch::create(*model, {dense(*model, 2, 1, 0.1)}, provenance());
  apply_patches_to_directory(in, {patch}, tmp / "out");
  const PatchEntry& e = patch.entries()[0];
  const at::Tensor delta = stored(tmp / "out", e.tensor).to(at::kDouble) - stored(in, e.tensor).to(at::kDouble);
  EXPECT_EQ(delta.sizes().vec(), (std::vector<int64_t>{256, 64}));
  EXPECT_LT((delta - e.logical_delta().t()).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(verify_patch_in_directory(tmp / "out", patch).applied);
}

TEST(PatchOnDisk, BFloat16CheckpointIsPatchedWithinItsRounding) {
  TempDir tmp;
  const std::string dir = copy_model(kLlama, tmp, "bf16");
  {
    const auto checkpoint = io::Checkpoint::open(kLlama);
    std::vector<at::Tensor> keep;
    std::vector<io::TensorToWrite> tensors;
    for (const auto& v : checkpoint.files()[0].tensors()) {
      keep.push_back(tensor_from_view(v).to(at::kBFloat16).contiguous());
      tensors.push_back({v.name, io::DType::BF16, v.shape, keep.back().data_ptr(), keep.back().nbytes()});
    }
    io::write_safetensors(dir + "/model.safetensors", tensors);
  }
  auto model = Model::load(dir);
  ASSERT_EQ(model->dtype(), at::kBFloat16);
  const std::string t = "model.layers.0.mlp.down_proj.weight";
  const auto patch = Patch::create(*model, {low_rank(*model, 0, 1, 1, 0.5)}, provenance());
  EXPECT_EQ(patch.base().tensors.at(t).dtype, "BF16");

  const at::Tensor before = model->weight(t).clone();
  PatchStack stack(*model);
  stack.apply(patch);  // writes into the copy-on-write mapping of the bf16 file
  stack.revert(patch);
  EXPECT_TRUE(at::equal(model->weight(t), before));

  apply_patches_to_directory(dir, {patch}, tmp / "out");
  EXPECT_TRUE(
      within_rounding(stored(tmp / "out", t), stored(dir, t), patch.entries()[0].stored_delta(), std::ldexp(1.0, -8)));
  EXPECT_TRUE(verify_patch_in_directory(tmp / "out", patch).applied);
  revert_patch_in_directory(tmp / "out", patch, tmp / "back");
  EXPECT_EQ(file_hashes(tmp / "back"), file_hashes(dir));
}

TEST(PatchOnDisk, ExistingOutputIsRefusedUnlessForced) {
  TempDir tmp;
  const std::string in = copy_model(kGemma4, tmp);
  auto model = Model::load(in);
  const auto patch = Patch::create(*model, {low_rank(*model, 4, 1, 1)}, provenance());
  fs::create_directories(tmp / "out");
  std::ofstream(tmp / "out/keep.txt") << "mine";
  EXPECT_THROW(apply_patches_to_directory(in, {patch}, tmp / "out"), InputError);
  EXPECT_TRUE(fs::exists(tmp / "out/keep.txt"));
  EXPECT_FALSE(fs::exists(tmp / "out/model.safetensors"));
  apply_patches_to_directory(in, {patch}, tmp / "out", {true});
  EXPECT_FALSE(fs::exists(tmp / "out/keep.txt"));
  EXPECT_TRUE(verify_patch_in_directory(tmp / "out", patch).applied);
  // The input itself, or a directory inside it, is never a destination, forced or not.
  EXPECT_THROW(apply_patches_to_directory(in, {patch}, in, {true}), InputError);
  EXPECT_THROW(apply_patches_to_directory(in, {patch}, in + "/sub", {true}), InputError);
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 2);  // model, out
}

TEST(PatchOnDisk, FailuresLeaveNoOutputAndNoTemporaryDirectory) {
  TempDir tmp;
  const std::string in = copy_model(kGemma4, tmp);
  auto model = Model::load(in);
  const auto patch = Patch::create(*model, {low_rank(*model, 4, 1, 1)}, provenance());
  auto llama = Model::load(kLlama);
  const auto foreign = Patch::create(*llama, {low_rank(*llama, 0, 1, 1)}, provenance());
  auto entries = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.path())) names.insert(e.path().filename().string());
    return names;
  };
  const auto before = entries();

  // A patch for another model, after a good one: refused before anything is written.
  EXPECT_THROW(apply_patches_to_directory(in, {patch, foreign}, tmp / "out"), InputError);
  EXPECT_EQ(entries(), before);

  // A failure midway: the shards are written, then a file cannot be copied (a dangling link).
  fs::create_symlink(tmp / "nowhere", in + "/dangling.txt");
  const auto hashes = file_hashes(in);
  EXPECT_THROW(apply_patches_to_directory(in, {patch}, tmp / "out"), InputError);
  EXPECT_EQ(entries(), before);
  EXPECT_EQ(file_hashes(in), hashes);

  // A patched directory whose weights were changed afterwards no longer matches its record.
  fs::remove(in + "/dangling.txt");
  apply_patches_to_directory(in, {patch}, tmp / "out");
  const std::string t = patch.entries()[0].tensor;
  {
    const auto checkpoint = io::Checkpoint::open(tmp / "out");
    std::vector<at::Tensor> keep;
    std::vector<io::TensorToWrite> tensors;
    for (const auto& v : checkpoint.files()[0].tensors()) {
      keep.push_back(tensor_from_view(v).clone());
      if (v.name == t) keep.back()[0][0] += 1.0f;
      tensors.push_back({v.name, v.dtype, v.shape, keep.back().data_ptr(), v.nbytes});
    }
    io::write_safetensors(tmp / "out/model.safetensors", tensors);
  }
  EXPECT_THROW(verify_patch_in_directory(tmp / "out", patch), FormatError);
  EXPECT_THROW(revert_patch_in_directory(tmp / "out", patch, tmp / "back"), FormatError);
  EXPECT_FALSE(fs::exists(tmp / "back"));
}

TEST(PatchOnDisk, TheRecordsFingerprintsAreCheckedAsAPatchsAre) {
  TempDir tmp;
  const std::string in = copy_model(kGemma4, tmp);
  auto model = Model::load(in);
  const auto patch = Patch::create(*model, {low_rank(*model, 4, 1, 1)}, provenance());
  apply_patches_to_directory(in, {patch}, tmp / "out");
  const std::string path = tmp / "out/graft_patches.json";
  std::ifstream text(path);
  Json record = Json::parse(text);
  text.close();
  std::string& sha = record["base"]["tensors"][patch.entries()[0].tensor]["sha256"].get_ref<std::string&>();
  std::transform(sha.begin(), sha.end(), sha.begin(), [](unsigned char c) { return std::toupper(c); });
  std::ofstream(path, std::ios::trunc) << record.dump(2);
  try {
    read_patch_record(tmp / "out");
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("lower-case hex"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(PatchOnDisk, VerifyReportsAPatchForAnotherModel) {
  auto llama = Model::load(kLlama);
  const auto foreign = Patch::create(*llama, {low_rank(*llama, 0, 1, 1)}, provenance());
  const VerifyReport report = verify_patch_in_directory(kFacts, foreign);
  EXPECT_FALSE(report.belongs);
  EXPECT_FALSE(report.applied);
  EXPECT_NE(report.mismatch.find("llama"), std::string::npos) << report.mismatch;
}

}  // namespace
}  // namespace graft::edits
