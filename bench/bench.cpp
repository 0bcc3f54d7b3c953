// graft benchmarks: see bench.h. Every ratio compares two figures measured in the same process.
#include "bench/bench.h"

#include "bench/editors.h"

#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/Parallel.h>
#include <torch/headeronly/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "arch/arch.h"
#include "core/error.h"
#include "core/hooks.h"
#include "core/io/safetensors.h"
#include "core/model.h"
#include "core/tensor.h"
#include "edits/stats.h"

#ifndef GRAFT_SOURCE_DIR
#define GRAFT_SOURCE_DIR "."
#endif

namespace graft::bench {
namespace fs = std::filesystem;
using nlohmann::json;

// ------------------------------------------------------------------ targets
constexpr double kPrefillOfPeak = 0.60;      // prefill FLOP/s over GEMM FLOP/s, 1B-like, 512 tokens
constexpr double kDecodeOfBandwidth = 0.60;  // bytes read per second over the read reference
constexpr double kStatsOverhead = 0.10;      // statistics collection over plain prefill, minus 1
constexpr double kHooksOverhead = 0.02;      // empty Hooks object over null hooks, minus 1
constexpr double kMemoryOverWeights = 1.20;  // inference peak resident over weight bytes

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

c10::DeviceIndex index_of(at::Device device) {
  return device.has_index() ? device.index() : at::accelerator::getDeviceIndex();
}

// Waits for the device's queued work (an accelerator runs asynchronously; timing a call means
// timing its completion). Nothing to wait for on the CPU.
void synchronize(at::Device device) {
  if (!device.is_cpu()) at::accelerator::synchronizeDevice(index_of(device));
}

// Seconds one call of `fn` takes to complete on `device`. Every figure below is timed through it.
double seconds_of(at::Device device, const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  synchronize(device);
  return seconds_since(t0);
}

// One warm-up, then `repeats` timed runs; the median in seconds.
double time_median(at::Device device, int repeats, const std::function<void()>& fn) {
  seconds_of(device, fn);
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) t.push_back(seconds_of(device, fn));
  return median(t);
}

// Two functions timed alternately (so drift hits both alike): medians of each.
std::pair<double, double> time_pair(at::Device device, int repeats, const std::function<void()>& a,
                                    const std::function<void()>& b) {
  seconds_of(device, a);
  seconds_of(device, b);
  std::vector<double> ta, tb;
  for (int i = 0; i < repeats; ++i) {
    ta.push_back(seconds_of(device, a));
    tb.push_back(seconds_of(device, b));
  }
  return {median(ta), median(tb)};
}

// kB fields of /proc/self/status ("VmRSS", "VmHWM"); -1 when absent.
int64_t proc_status_kb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}
// Resets the resident-set peak (VmHWM) to the current resident set; false when the kernel refuses.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// ------------------------------------------------------------------ model shapes
json gemma4_e2b_config(bool quick) {
  const std::string path = std::string(GRAFT_SOURCE_DIR) + "/tests/data/configs/gemma-4-E2B-it.config.json";
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot read the Gemma 4 E2B config");
  json c = json::parse(in);
  json& t = c["text_config"];
  t["vocab_size"] = 8192;  // the real 262144 rows would be 1.6 GB (+ 9 GB of per-layer embeddings) in float32
  t["vocab_size_per_layer_input"] = 8192;
  t["dtype"] = "float32";
  c["dtype"] = "float32";
  if (quick) {  // 4 layers keeping every kind: sliding, full, and a KV-shared double-wide one of each
    t["num_hidden_layers"] = 4;
    t["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention", "full_attention"};
    t["num_kv_shared_layers"] = 2;
  }
  return c;
}

// The E2B shape the editors' rows run on: the four layers of --quick (every kind of layer), with the
// facts model's vocabulary, so that its tokenizer decodes what the model samples (context templates).
json gemma4_e2b_editors_config() {
  json c = gemma4_e2b_config(/*quick=*/true);
  const std::string facts = std::string(GRAFT_SOURCE_DIR) + "/models/gemma4_facts/config.json";
  std::ifstream in(facts);
  if (!in) throw InputError(facts + ": cannot read the facts model's config");
  json f = json::parse(in);
  const json& text = f.contains("text_config") ? f["text_config"] : f;
  c["text_config"]["vocab_size"] = text.at("vocab_size");
  c["text_config"]["vocab_size_per_layer_input"] = text.value("vocab_size_per_layer_input", text.at("vocab_size"));
  return c;
}

json llama_1b_config(bool quick) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", 2048},
          {"intermediate_size", 8192},
          {"num_hidden_layers", quick ? 2 : 16},
          {"num_attention_heads", 32},
          {"num_key_value_heads", 8},
          {"head_dim", 64},
          {"vocab_size", 32000},  // Llama 3.2 has 128256
          {"tie_word_embeddings", true},
          {"rms_norm_eps", 1e-5},
          {"rope_theta", 500000.0},
          {"max_position_embeddings", 4096},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"dtype", "float32"}};
}

json gpt2_small_config(bool quick) {
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"n_embd", 768},
          {"n_layer", quick ? 6 : 12},
          {"n_head", 12},
          {"n_positions", 1024},
          {"n_ctx", 1024},
          {"n_inner", nullptr},
          {"vocab_size", 50257},
          {"activation_function", "gelu_new"},
          {"layer_norm_epsilon", 1e-5},
          {"tie_word_embeddings", true},
          {"bos_token_id", 50256},
          {"eos_token_id", 50256},
          {"dtype", "float32"}};
}

// ------------------------------------------------------------------ counting
int64_t numel(const LinearWeights& w) { return w.defined() ? w.weight.numel() : 0; }

// Elements of every matrix a token is multiplied by (each layer's Linear roles, the per-layer-input
// projection, the LM head; not the experts, which only some tokens reach).
int64_t matmul_params(const Model& m) {
  int64_t p = m.lm_head().defined() ? m.lm_head().numel() : 0;
  if (m.ple_model_projection().defined()) p += m.ple_model_projection().numel();
  for (int i = 0; i < m.arch().num_layers(); ++i) {
    const LayerWeights& l = m.layer_weights(i);
    for (const arch::TensorRoleInfo& role : arch::kTensorRoles)
      if (role.binding == arch::TensorBinding::Linear) p += numel(l[role.role]);
  }
  return p;
}

// Prefill FLOPs (2 m n k per product): every matrix for every token, logits at every position,
// and the attention products QK^T and PV over the full S x S square (what a dense kernel computes).
double prefill_flops(const Model& m, int64_t batch, int64_t tokens) {
  double f = 2.0 * static_cast<double>(batch * tokens) * static_cast<double>(matmul_params(m));
  for (const auto& l : m.spec().layers)
    f += 4.0 * batch * l.num_q_heads * static_cast<double>(tokens) * tokens * l.head_dim;
  return f;
}

// Bytes one decode step reads: every matrix once, plus each layer's cached K and V at `context`.
double decode_bytes(const Model& m, int64_t context) {
  const double elem = static_cast<double>(c10::elementSize(m.dtype()));
  double b = elem * static_cast<double>(matmul_params(m));
  for (const auto& l : m.spec().layers) b += elem * 2.0 * l.num_kv_heads * static_cast<double>(context) * l.head_dim;
  return b;
}

// ------------------------------------------------------------------ machine figures
// The accelerator's allocator statistics (peak bytes allocated), where this LibTorch has the
// device-generic API (2.9 and newer).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 9)
#define GRAFT_BENCH_DEVICE_STATS 1
void reset_device_peak(at::Device device) { at::accelerator::resetPeakStats(index_of(device)); }
double device_peak_bytes(at::Device device) {
  const auto stats = at::accelerator::getDeviceStats(index_of(device));
  return static_cast<double>(
      stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
}
#endif

// The reference figures, each timed alternately with the figure it divides (time_pair) so that
// load from elsewhere on the machine hits both alike.
// An n x n x n float32 matrix product through the same LibTorch: FLOPs 2 n^3. On an accelerator
// n is 8192, so that the product is not bound by launching it.
struct Gemm {
  explicit Gemm(at::Device device)
      : n(device.is_cpu() ? 2048 : 8192),
        a(at::randn({n, n}, at::TensorOptions().device(device))),
        b(at::randn({n, n}, at::TensorOptions().device(device))),
        c(at::empty({n, n}, at::TensorOptions().device(device))) {}
  void operator()() { at::mm_out(c, a, b); }
  double flops() const { return 2.0 * n * n * n; }
  int64_t n;
  at::Tensor a, b, c;
};
// Memory bandwidth over 512 MiB float32 arrays (16x the L3 of the machine in RESULTS.md):
// - read: a sum of the array, bytes read (nothing is written). A decode step only reads (every
//   weight matrix once, and the cached K/V), so this is the reference its bytes/s are divided by;
// - copy: STREAM's convention, bytes read plus bytes written (reported for comparison only).
struct Stream {
  static constexpr int64_t n = 128LL << 20;  // floats
  explicit Stream(at::Device device)
      : src(at::ones({n}, at::TensorOptions().device(device))),
        dst(at::zeros({n}, at::TensorOptions().device(device))),
        total(at::zeros({}, at::TensorOptions().device(device))) {}
  at::Tensor src, dst, total;
  void copy() { dst.copy_(src); }
  void read() { at::sum_out(total, src); }
  static double copy_bytes() { return 2.0 * 4.0 * static_cast<double>(n); }
  static double read_bytes() { return 4.0 * static_cast<double>(n); }
};

at::Tensor random_ids(const Model& m, int64_t batch, int64_t tokens, uint64_t seed) {
  at::Generator g = at::detail::createCPUGenerator(seed);
  return at::randint(1, m.spec().vocab_size, {batch, tokens}, g, at::TensorOptions().dtype(at::kLong));
}

// Prefills `prompt` into a fresh cache, then decodes `steps` greedy tokens; returns decode seconds.
double decode_seconds(const Model& m, const at::Tensor& prompt, int64_t steps) {
  KVCache cache(m, prompt.size(0), prompt.size(1) + steps);
  ForwardOptions o;
  o.cache = &cache;
  o.last_position_only = true;
  at::Tensor next = m.forward(prompt, o).argmax(-1);
  synchronize(m.device());  // the prefill is not part of the decode time
  return seconds_of(m.device(), [&] {
    for (int64_t i = 0; i < steps; ++i) next = m.forward(next, o).argmax(-1);
  });
}

using Log = std::function<void(const std::string&)>;

// The prompt of the memory workload, and the one decode is timed after: 128 random tokens (seed 7).
// (Shorter where the model has fewer positions, with room for the 16 decode steps.)
at::Tensor workload_prompt(const Model& m) {
  const int64_t positions = m.spec().learned_positions ? m.spec().max_position_embeddings : 0;
  return random_ids(m, 1, positions > 0 ? std::min<int64_t>(128, positions - 16) : 128, 7);
}

// Loads the model and records memory: the resident set before loading, its peaks over the load and
// over a small inference (prefill + decode), and what it holds after, split by kind.
std::shared_ptr<Model> load_measuring_memory(const std::string& name, const std::string& model_dir, const Options& opt,
                                             at::Device device, json& out, const Log& log) {
  const bool peak_reset = reset_peak_rss();
  const int64_t base_kb = proc_status_kb("VmRSS");
  const int64_t base_anon_kb = proc_status_kb("RssAnon"), base_file_kb = proc_status_kb("RssFile");
#ifdef GRAFT_BENCH_DEVICE_STATS
  if (!device.is_cpu()) {
    at::empty({1}, at::TensorOptions().device(device));  // starts the device's allocator, whose peak is reset next
    reset_device_peak(device);
  }
#endif
  LoadOptions load;
  load.device = opt.device;
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<Model> model = Model::load(model_dir, load);
  const Model& m = *model;
  synchronize(device);
  out["load_s"] = seconds_since(t0);
  const int64_t load_kb = proc_status_kb("VmHWM") - base_kb;
  decode_seconds(m, workload_prompt(m), 16);
  const int64_t infer_kb = proc_status_kb("VmHWM") - base_kb;
  // What the resident set holds after that workload, split: anonymous memory (tensors, buffers)
  // and file-backed pages (the memory-mapped weights, and LibTorch's own code paged in on first use).
  const int64_t anon_kb = proc_status_kb("RssAnon") - base_anon_kb, file_kb = proc_status_kb("RssFile") - base_file_kb;
  const double weight_bytes = static_cast<double>(m.weight_bytes());
  out["weight_bytes"] = weight_bytes;
  out["parameters"] = m.arch().parameter_count();
  out["layers"] = m.arch().num_layers();
  out["memory"] = {{"peak_reset", peak_reset},
                   {"process_bytes_before_load", base_kb * 1024.0},
                   {"load_peak_bytes", load_kb * 1024.0},
                   {"inference_peak_bytes", infer_kb * 1024.0},
                   {"inference_over_weights", infer_kb * 1024.0 / weight_bytes},
                   {"after_inference_anon_bytes", anon_kb * 1024.0},
                   {"after_inference_file_bytes", file_kb * 1024.0},
                   {"workload", "prefill 1x128 + 16 decode steps"},
                   {"target", kMemoryOverWeights}};
#ifdef GRAFT_BENCH_DEVICE_STATS
  if (!device.is_cpu()) {  // the weights live in device memory: the device allocator's peak counts
    const double device_peak = device_peak_bytes(device);
    out["memory"]["device_peak_bytes"] = device_peak;
    out["memory"]["device_peak_over_weights"] = device_peak / weight_bytes;
  }
#endif
  log(name + ": loaded, " + std::to_string(static_cast<int64_t>(weight_bytes / (1 << 20))) + " MiB of weights");
  return model;
}

void measure_references(const std::string& name, at::Device device, int r, Gemm& gemm, Stream& stream, json& out,
                        const Log& log) {
  out["gemm_n"] = gemm.n;
  out["gemm_flops_per_s"] = gemm.flops() / time_median(device, r + 2, [&] { gemm(); });
  out["copy_bytes_per_s"] = Stream::copy_bytes() / time_median(device, r + 2, [&] { stream.copy(); });
  out["read_bytes_per_s"] = Stream::read_bytes() / time_median(device, r + 2, [&] { stream.read(); });
  log(name + ": GEMM " + std::to_string(out["gemm_flops_per_s"].get<double>() / 1e9) + " GFLOP/s, read " +
      std::to_string(out["read_bytes_per_s"].get<double>() / 1e9) + " GB/s, copy " +
      std::to_string(out["copy_bytes_per_s"].get<double>() / 1e9) + " GB/s");
}

// Prefill at a few batch x length shapes (those within the model's positions), each timed
// alternately with the GEMM reference.
json measure_prefill(const std::string& name, const Model& m, const Options& opt, int r, Gemm& gemm, const Log& log) {
  std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 128}, {1, 512}, {8, 128}};
  if (!opt.quick) shapes.push_back({8, 512});
  if (m.spec().max_position_embeddings > 0)
    shapes.erase(std::remove_if(shapes.begin(), shapes.end(),
                                [&](auto s) { return s.second > m.spec().max_position_embeddings; }),
                 shapes.end());
  json prefill = json::array();
  for (auto [b, s] : shapes) {
    const at::Tensor ids = random_ids(m, b, s, 11);
    const auto [t_gemm, t] = time_pair(
        m.device(), r, [&] { gemm(); }, [&] { m.forward(ids); });
    const double flops = prefill_flops(m, b, s), peak = gemm.flops() / t_gemm;
    prefill.push_back({{"batch", b},
                       {"tokens", s},
                       {"seconds", t},
                       {"tokens_per_s", b * s / t},
                       {"flops", flops},
                       {"gemm_flops_per_s", peak},
                       {"of_gemm_peak", flops / t / peak}});
    log(name + ": prefill " + std::to_string(b) + "x" + std::to_string(s) + " " + std::to_string(b * s / t) + " tok/s");
  }
  return prefill;
}

// Decode with the KV cache, batch 1, after the 128-token workload prompt, alternated with the read
// reference.
json measure_decode(const std::string& name, const Model& m, const Options& opt, int r, Stream& stream,
                    const Log& log) {
  const int64_t steps = opt.quick ? 32 : 64;
  const at::Tensor prompt = workload_prompt(m);
  std::vector<double> t, t_read;
  decode_seconds(m, prompt, steps);  // warm-up
  for (int i = 0; i < r; ++i) {
    t_read.push_back(seconds_of(m.device(), [&] { stream.read(); }));
    t.push_back(decode_seconds(m, prompt, steps));
  }
  const double sec = median(t), read = Stream::read_bytes() / median(t_read);
  const double bytes = decode_bytes(m, 128 + steps / 2);
  log(name + ": decode " + std::to_string(steps / sec) + " tok/s");
  return {{"batch", 1},
          {"prompt", 128},
          {"steps", steps},
          {"tokens_per_s", steps / sec},
          {"bytes_per_token", bytes},
          {"read_bytes_per_s", read},
          {"of_read_bandwidth", bytes * steps / sec / read}};
}

// Statistics of one middle layer's MLP key, accumulated as edits/stats.cpp does (KeyMomentSum:
// float32 panel products, float64 sum; forward stopped after the layer), against the same
// truncated forward without the hook. The float64 sum is updated after every forward here
// (KeyStatistics::collect does it every 4096 tokens), so the figure errs on the high side.
json measure_statistics(const std::string& name, const Model& m, int r, const Log& log) {
  const at::Device device = m.device();
  const int layer = m.arch().num_layers() / 2;
  const int64_t width = m.arch().intermediate_size_for_layer(layer);
  const at::Tensor ids = random_ids(m, 4, 128, 13);
  edits::KeyMomentSum sum(width);
  Hooks hooks(m.arch().num_layers());
  hooks.add({HookPoint::MlpPost, layer}, [&sum](const at::Tensor& keys, const HookName&) -> std::optional<at::Tensor> {
    sum.add(keys);
    return std::nullopt;
  });
  ForwardOptions plain, stats;
  plain.stop_after_layers = stats.stop_after_layers = layer + 1;
  stats.hooks = &hooks;
  const auto [t_plain, t_stats] = time_pair(
      device, r, [&] { m.forward(ids, plain); },
      [&] {
        m.forward(ids, stats);
        sum.flush();
      });
  // The accumulation alone, on a key of the same shape.
  const at::Tensor k = at::randn({ids.numel(), width}, at::TensorOptions().device(device));
  const double t_kkt = time_median(device, r, [&] {
    sum.add(k);
    sum.flush();
  });
  log(name + ": statistics overhead " + std::to_string(t_stats / t_plain - 1.0));
  return {{"layer", layer},
          {"width", width},
          {"batch", 4},
          {"tokens", 128},
          {"plain_tokens_per_s", ids.numel() / t_plain},
          {"stats_tokens_per_s", ids.numel() / t_stats},
          {"overhead", t_stats / t_plain - 1.0},
          {"kkt_share", t_kkt / t_plain},
          {"target", kStatsOverhead}};
}

// The hook machinery: null pointer vs an empty Hooks object, alternated, more repeats (small effect).
json measure_hooks(const std::string& name, const Model& m, int r, const Log& log) {
  const at::Tensor ids = random_ids(m, 1, 128, 17);
  Hooks empty(m.arch().num_layers());
  ForwardOptions none, with_empty;
  with_empty.hooks = &empty;
  const auto [t_null, t_empty] = time_pair(
      m.device(), 4 * r + 1, [&] { m.forward(ids, none); }, [&] { m.forward(ids, with_empty); });
  log(name + ": empty-hooks overhead " + std::to_string(t_empty / t_null - 1.0));
  return {{"null_s", t_null}, {"empty_s", t_empty}, {"overhead", t_empty / t_null - 1.0}, {"target", kHooksOverhead}};
}

}  // namespace

std::string source_dir() { return GRAFT_SOURCE_DIR; }

std::vector<std::string> section_names() { return {"prefill", "decode", "statistics", "hooks", "editors"}; }

bool Options::wants(const std::string& section) const {
  return sections.empty() || std::find(sections.begin(), sections.end(), section) != sections.end();
}

std::vector<std::string> model_names() {
  return {"gemma4-e2b", "llama-1b", "gpt2-small", "gemma4-facts", "gpt2-facts", "llama-facts", "gemma4-e2b-editors"};
}

std::string bundled_model_dir(const std::string& name, const Options& options) {
  if (name == "gemma4-facts") return options.facts_dir;
  if (name == "gpt2-facts") return source_dir() + "/tests/data/facts/gpt2_facts";
  if (name == "llama-facts") return source_dir() + "/tests/data/facts/llama_facts";
  return "";
}

void write_random_model(const std::string& name, bool quick, const std::string& dir) {
  json config;
  if (name == "gemma4-e2b") config = gemma4_e2b_config(quick);
  else if (name == "gemma4-e2b-editors") config = gemma4_e2b_editors_config();
  else if (name == "llama-1b") config = llama_1b_config(quick);
  else if (name == "gpt2-small") config = gpt2_small_config(quick);
  else throw InputError("bench: no random model named '" + name + "'");
  fs::create_directories(dir);
  std::ofstream(dir + "/config.json") << config.dump(1);
  const auto arch = arch::Architecture::from_json(config, dir + "/config.json");

  at::Generator gen = at::detail::createCPUGenerator(1234);
  std::vector<at::Tensor> data;
  std::vector<io::TensorToWrite> tensors;
  for (const auto& t : arch->expected_tensors()) {
    at::Tensor x;
    if (t.shape.size() >= 2) {
      x = at::empty(t.shape).normal_(0.0, 0.02, gen);
    } else {  // norm weights and scalars: the identity (1 - offset); biases 0
      const bool bias = t.name.size() >= 4 && t.name.compare(t.name.size() - 4, 4, "bias") == 0;
      x = at::full(t.shape, bias ? 0.0 : 1.0 - arch->spec().norm_weight_offset);
    }
    data.push_back(x);
    tensors.push_back({t.name, io::DType::F32, t.shape, x.data_ptr(), static_cast<size_t>(x.nbytes())});
  }
  io::write_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  if (name == "gemma4-e2b-editors")
    for (const char* file : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(source_dir() + "/models/gemma4_facts/" + file, dir + "/" + file,
                    fs::copy_options::overwrite_existing);
}

json measure_model(const std::string& name, const std::string& model_dir, const Options& opt, const Log& log) {
  const int r = std::max(1, opt.repeats);
  if (opt.threads > 0) at::set_num_threads(opt.threads);
  json out = {{"model", name}, {"dir", model_dir}, {"threads", at::get_num_threads()}};
  // Memory first, before anything else allocates.
  const at::Device device = parse_device(opt.device);
  out["device"] = device.str();
  const std::shared_ptr<Model> model = load_measuring_memory(name, model_dir, opt, device, out, log);
  const Model& m = *model;

  Gemm gemm(device);
  Stream stream(device);
  measure_references(name, device, r, gemm, stream, out, log);
  // The small facts models (GPT-2's has 64 positions) and the E2B editing shape are there for the editors.
  const bool editors_only = (!bundled_model_dir(name, opt).empty() && name != "gemma4-facts") ||
                            name == "gemma4-e2b-editors";
  if (opt.wants("prefill") && !editors_only) out["prefill"] = measure_prefill(name, m, opt, r, gemm, log);
  if (opt.wants("decode") && !editors_only) out["decode"] = measure_decode(name, m, opt, r, stream, log);
  if (opt.wants("statistics") && !editors_only) out["statistics"] = measure_statistics(name, m, r, log);
  if (opt.wants("hooks") && !editors_only) out["hooks"] = measure_hooks(name, m, r, log);
  // Models with a tokenizer (the facts models; the random E2B shape, given the facts tokenizer in a
  // --quick run): the real statistics collector and the editors.
  if (model->tokenizer() != nullptr && opt.wants("editors")) out["editors"] = measure_editors(name, *model, opt, log);
  return out;
}

// ------------------------------------------------------------------ tables
namespace {
std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
std::string verdict(bool pass) { return pass ? "PASS" : "MISS"; }
}  // namespace

std::string format_tables(const json& results) {
  std::ostringstream o;
  o << "Reference figures (per model process, at its start, on its device): GEMM n^3 float32 (n 2048 on the CPU,\n"
       "8192 on an accelerator); read: sum of 512 MiB (bytes read); copy: 512 MiB (STREAM convention, bytes read +\n"
       "bytes written; for comparison only). Each ratio below divides by a reference timed alternately with it\n";
  o << "model          layers  weights MiB  GEMM GFLOP/s  read GB/s  copy GB/s  load ms  threads  device\n";
  for (const auto& r : results)
    o << r["model"].get<std::string>()
      << std::string(15 - std::min<size_t>(14, r["model"].get<std::string>().size()), ' ')
      << fmt("%6.0f", r["layers"].get<double>()) << fmt("  %11.0f", r["weight_bytes"].get<double>() / 1048576.0)
      << fmt("  %12.1f", r["gemm_flops_per_s"].get<double>() / 1e9)
      << fmt("  %9.2f", r["read_bytes_per_s"].get<double>() / 1e9)
      << fmt("  %9.2f", r["copy_bytes_per_s"].get<double>() / 1e9) << fmt("  %7.1f", 1e3 * r["load_s"].get<double>())
      << fmt("  %7.0f", r["threads"].get<double>()) << "  " << r.value("device", std::string("cpu")) << "\n";

  auto name = [](const json& r) {
    std::string n = r["model"].get<std::string>();
    return n + std::string(n.size() < 14 ? 14 - n.size() : 1, ' ');
  };
  // A section left out of the run (--sections) is left out of the tables.
  auto measured = [&](const char* section) {
    return std::any_of(results.begin(), results.end(), [&](const json& r) { return r.contains(section); });
  };
  if (measured("prefill")) {
    o << "\nPrefill (FLOPs: 2mnk for every matrix and for QK^T, PV over the full square)\n";
    o << "model         batch x tokens   tokens/s  GEMM GFLOP/s  of GEMM peak  target\n";
  }
  for (const auto& r : results)
    for (const auto& p : r.value("prefill", json::array())) {
      const bool target_row = r["model"] == "llama-1b" && p["tokens"] == 512;
      o << name(r) << fmt("%5.0f", p["batch"].get<double>()) << " x " << fmt("%-6.0f", p["tokens"].get<double>())
        << fmt("  %9.1f", p["tokens_per_s"].get<double>()) << fmt("  %12.1f", p["gemm_flops_per_s"].get<double>() / 1e9)
        << fmt("  %11.1f%%", 100 * p["of_gemm_peak"].get<double>())
        << (target_row ? "  >= 60%: " + verdict(p["of_gemm_peak"].get<double>() >= kPrefillOfPeak) : std::string())
        << "\n";
    }
  if (measured("decode")) {
    o << "\nDecode with the KV cache (batch 1, 128-token prompt; bytes read per token: every matrix + cached K/V)\n";
    o << "model         tokens/s  MiB/token  decode GB/s  read GB/s  of read bandwidth  target >= 60%\n";
  }
  for (const auto& r : results) {
    if (!r.contains("decode")) continue;
    const auto& d = r["decode"];
    o << name(r) << fmt("%8.1f", d["tokens_per_s"].get<double>())
      << fmt("  %9.1f", d["bytes_per_token"].get<double>() / 1048576.0)
      << fmt("  %11.2f", d["tokens_per_s"].get<double>() * d["bytes_per_token"].get<double>() / 1e9)
      << fmt("  %9.2f", d["read_bytes_per_s"].get<double>() / 1e9)
      << fmt("  %16.1f%%", 100 * d["of_read_bandwidth"].get<double>()) << "  "
      << verdict(d["of_read_bandwidth"].get<double>() >= kDecodeOfBandwidth) << "\n";
  }
  if (measured("statistics")) {
    o << "\nStatistics of one MLP key (k^T k hook as KeyStatistics::collect: float32 panels on and above the diagonal,\n"
         "float64 sum updated every batch; 4 x 128 tokens, forward stopped after the layer) vs the same forward\n";
    o << "model         layer  width  plain tok/s  stats tok/s  overhead  (k^T k alone)  target <= 10%\n";
  }
  for (const auto& r : results) {
    if (!r.contains("statistics")) continue;
    const auto& s = r["statistics"];
    o << name(r) << fmt("%5.0f", s["layer"].get<double>()) << fmt("  %5.0f", s["width"].get<double>())
      << fmt("  %11.1f", s["plain_tokens_per_s"].get<double>())
      << fmt("  %11.1f", s["stats_tokens_per_s"].get<double>()) << fmt("  %7.1f%%", 100 * s["overhead"].get<double>())
      << fmt("  %12.1f%%", 100 * s["kkt_share"].get<double>()) << "  "
      << verdict(s["overhead"].get<double>() <= kStatsOverhead) << "\n";
  }
  if (measured("hooks")) {
    o << "\nHook machinery (prefill 1 x 128): empty Hooks object vs null pointer, alternated\n";
    o << "model         null ms   empty ms  overhead  target <= 2%\n";
  }
  for (const auto& r : results) {
    if (!r.contains("hooks")) continue;
    const auto& h = r["hooks"];
    o << name(r) << fmt("%7.1f", 1e3 * h["null_s"].get<double>()) << fmt("  %9.1f", 1e3 * h["empty_s"].get<double>())
      << fmt("  %7.1f%%", 100 * h["overhead"].get<double>()) << "  "
      << verdict(h["overhead"].get<double>() <= kHooksOverhead) << "\n";
  }
  o << "\nPeak resident memory over weight bytes (fresh process per model; weights memory-mapped; peaks are above the\n"
       "process's resident set before loading, which is LibTorch itself and is shown, not counted)\n";
  o << "model         process MiB  weights MiB  load peak MiB  inference peak MiB  ratio  target <= 1.2   then: anon MiB  file MiB\n";
  for (const auto& r : results) {
    const auto& mem = r["memory"];
    const double ratio = mem["inference_over_weights"].get<double>();
    o << name(r) << fmt("%11.0f", mem.value("process_bytes_before_load", 0.0) / 1048576.0)
      << fmt("  %11.0f", r["weight_bytes"].get<double>() / 1048576.0)
      << fmt("  %13.0f", mem["load_peak_bytes"].get<double>() / 1048576.0)
      << fmt("  %18.0f", mem["inference_peak_bytes"].get<double>() / 1048576.0) << fmt("  %5.2f", ratio) << "  "
      << (r.value("device", std::string("cpu")) == "cpu" ? verdict(ratio <= kMemoryOverWeights) : "host")
      << (mem["peak_reset"].get<bool>() ? "" : " (peak not reset)")
      << fmt("  %19.0f", mem.value("after_inference_anon_bytes", 0.0) / 1048576.0)
      << fmt("  %8.0f", mem.value("after_inference_file_bytes", 0.0) / 1048576.0) << "\n";
  }
  if (std::any_of(results.begin(), results.end(),
                  [](const json& r) { return r["memory"].contains("device_peak_bytes"); })) {
    o << "\nDevice memory: the accelerator allocator's peak (load + prefill 1 x 128 + 16 decode steps) over weight bytes\n";
    o << "model         weights MiB  device peak MiB  ratio  target <= 1.2\n";
  }
  for (const auto& r : results) {
    if (!r["memory"].contains("device_peak_bytes")) continue;
    const double ratio = r["memory"]["device_peak_over_weights"].get<double>();
    o << name(r) << fmt("%11.0f", r["weight_bytes"].get<double>() / 1048576.0)
      << fmt("  %15.0f", r["memory"]["device_peak_bytes"].get<double>() / 1048576.0) << fmt("  %5.2f", ratio) << "  "
      << verdict(ratio <= kMemoryOverWeights) << "\n";
  }
  for (const auto& r : results) o << format_editor_rows(r);
  return o.str();
}

}  // namespace graft::bench
