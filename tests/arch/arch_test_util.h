// Helpers shared by the arch tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "arch/arch.h"
#include "core/error.h"

namespace graft::arch::test {

inline std::string data_path(const std::string& relative) { return std::string(GRAFT_TEST_DATA) + "/" + relative; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

// Every fixture model directory: the hf-parity models, the facts models and models/gemma4_facts.
inline std::vector<std::string> fixture_model_dirs() {
  std::vector<std::string> dirs;
  for (const std::string& root : {data_path("hf-parity"), data_path("facts")}) {
    for (const auto& entry : std::filesystem::directory_iterator(root)) {
      if (std::filesystem::exists(entry.path() / "model.safetensors")) dirs.push_back(entry.path().string());
    }
  }
  dirs.push_back(std::string(GRAFT_MODELS_DIR) + "/gemma4_facts");
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// `name` with every character gtest does not allow in a test name replaced by '_'.
inline std::string gtest_name(std::string name) {
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

inline std::unique_ptr<Architecture> from_text(const std::string& json_text, const std::string& source = "test") {
  return Architecture::from_json(nlohmann::json::parse(json_text), source);
}

inline std::map<std::string, std::vector<int64_t>> tensor_map(const Architecture& arch) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const TensorSpec& t : arch.expected_tensors()) {
    EXPECT_TRUE(out.emplace(t.name, t.shape).second) << "listed twice: " << t.name;
  }
  return out;
}

// Runs `f`, expecting an InputError whose message contains every one of `parts`; returns the message.
template <typename F>
std::string expect_input_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "\"" << part << "\" not in: " << message;
    }
    return message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected graft::InputError, got another exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected graft::InputError, nothing was thrown";
  return "";
}

// Every per-layer fact, in a form EXPECT_EQ can compare and print.
inline std::string describe_layer(const LayerSpec& l) {
  std::ostringstream s;
  const RopeSpec& r = l.rope;
  s << "layer " << l.index << ": " << attention_kind_name(l.attention) << " window=" << l.sliding_window
    << " q=" << l.num_q_heads << " kv=" << l.num_kv_heads << " hd=" << l.head_dim << " src=" << l.kv_source
    << " k=" << l.has_k_proj << " v=" << l.has_v_proj << " k_eq_v=" << l.k_eq_v << " qk_norm=" << l.has_qk_norm
    << " v_norm=" << l.has_v_norm << " scale=" << l.attention_scale << " softcap=" << l.attn_logit_softcap
    << " rope=" << rope_kind_name(r.kind) << "/" << r.theta << "/" << r.dim << "/" << r.rotated_pairs << "/" << r.factor
    << "/" << r.low_freq_factor << "/" << r.high_freq_factor << "/" << r.original_max_position_embeddings << "/"
    << r.attention_scaling << "/" << r.partial_rotary_factor << " mlp=" << l.mlp_width << " moe=" << l.moe.num_experts
    << "/" << l.moe.top_k << "/" << l.moe.expert_width << " ple=" << l.has_per_layer_input
    << " scalar=" << l.has_layer_scalar;
  return s.str();
}

// Two architectures whose layers, tensors and model-level numerics agree.
inline void expect_same_model(const Architecture& a, const Architecture& b) {
  ASSERT_EQ(a.num_layers(), b.num_layers());
  for (int i = 0; i < a.num_layers(); ++i) EXPECT_EQ(describe_layer(a.layer(i)), describe_layer(b.layer(i)));
  EXPECT_EQ(tensor_map(a), tensor_map(b));
  const ModelSpec &x = a.spec(), &y = b.spec();
  EXPECT_EQ(x.hidden_size, y.hidden_size);
  EXPECT_EQ(x.vocab_size, y.vocab_size);
  EXPECT_EQ(x.norm_weight_offset, y.norm_weight_offset);
  EXPECT_EQ(x.embed_scale, y.embed_scale);
  EXPECT_EQ(x.final_logit_softcap, y.final_logit_softcap);
  EXPECT_EQ(x.per_layer_input_size, y.per_layer_input_size);
  EXPECT_EQ(x.tie_word_embeddings, y.tie_word_embeddings);
}

}  // namespace graft::arch::test
