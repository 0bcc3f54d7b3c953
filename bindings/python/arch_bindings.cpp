// Python view of the architecture trait layer: every per-layer question, same names as C++.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "arch/arch.h"

namespace py = pybind11;
using graft::arch::Architecture;

namespace {

py::dict rope_dict(const graft::arch::RopeSpec& r) {
  py::dict d;
  d["type"] = graft::arch::rope_kind_name(r.kind);
  d["theta"] = r.theta;
  d["dim"] = r.dim;
  d["rotated_pairs"] = r.rotated_pairs;
  d["factor"] = r.factor;
  return d;
}

}  // namespace

void bind_arch(py::module_& m) {
  py::class_<Architecture, std::shared_ptr<Architecture>>(m, "Architecture",
                                                          "Per-layer facts of a model, from its config.json alone")
      .def_static(
          "from_model_dir",
          [](const std::string& dir) { return std::shared_ptr<Architecture>(Architecture::from_model_dir(dir)); },
          py::arg("model_dir"), "Read config.json of a model directory")
      .def_static(
          "from_config_file",
          [](const std::string& path) { return std::shared_ptr<Architecture>(Architecture::from_config_file(path)); },
          py::arg("config_path"), "Read one config.json")
      .def_static("supported_model_types", &Architecture::supported_model_types,
                  "The config.json model_type values graft knows")
      .def_property_readonly(
          "family", [](const Architecture& a) { return graft::arch::family_name(a.family()); },
          "Family: llama, qwen2, qwen3, gemma2, gemma3, gemma4, gpt2")
      .def_property_readonly(
          "model_type", [](const Architecture& a) { return a.spec().model_type; }, "config.json model_type")
      .def_property_readonly("num_layers", &Architecture::num_layers, "Number of decoder layers")
      .def_property_readonly("hidden_size", &Architecture::hidden_size, "Width of the residual stream")
      .def_property_readonly("vocab_size", &Architecture::vocab_size, "Rows of the embedding / LM head")
      .def("intermediate_size_for_layer", &Architecture::intermediate_size_for_layer, py::arg("layer"),
           "MLP width of a layer (the editors' key width)")
      .def("head_dim_for_layer", &Architecture::head_dim_for_layer, py::arg("layer"), "Attention head size of a layer")
      .def("num_q_heads_for_layer", &Architecture::num_q_heads_for_layer, py::arg("layer"), "Query heads of a layer")
      .def("num_kv_heads_for_layer", &Architecture::num_kv_heads_for_layer, py::arg("layer"),
           "Key/value heads of a layer")
      .def("kv_source", &Architecture::kv_source, py::arg("layer"),
           "The layer whose K/V this layer reads (itself unless KV-shared)")
      .def("has_v_proj", &Architecture::has_v_proj, py::arg("layer"), "False on K == V layers")
      .def("is_sliding", &Architecture::is_sliding, py::arg("layer"), "Whether the layer uses sliding-window attention")
      .def("sliding_window", &Architecture::sliding_window, py::arg("layer"), "Window of a sliding layer")
      .def("attention_scale", &Architecture::attention_scale, py::arg("layer"), "Scale applied to q.k of a layer")
      .def(
          "rope_for_layer", [](const Architecture& a, int i) { return rope_dict(a.rope_for_layer(i)); },
          py::arg("layer"), "RoPE of a layer: type, theta, dim, rotated_pairs, factor")
      .def(
          "mlp_down_projection", [](const Architecture& a, int i) { return a.mlp_down_projection(i).weight; },
          py::arg("layer"), "HF name of a layer's MLP down-projection weight")
      .def_property_readonly("has_per_layer_embeddings", &Architecture::has_per_layer_embeddings,
                             "Gemma 4 per-layer embeddings")
      .def_property_readonly(
          "always_prepend_bos", [](const Architecture& a) { return a.spec().always_prepend_bos; },
          "Whether prompts start with BOS even when the tokenizer adds none (Gemma)")
      .def("parameter_count", &Architecture::parameter_count, "Parameters implied by the config")
      .def(
          "expected_tensors",
          [](const Architecture& a) {
            std::vector<std::pair<std::string, std::vector<int64_t>>> out;
            for (const auto& t : a.expected_tensors()) out.emplace_back(t.name, t.shape);
            return out;
          },
          "(HF tensor name, shape) of every tensor the checkpoint must hold");
}
