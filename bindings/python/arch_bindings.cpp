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
      .def_static("from_model_dir", [](const std::string& dir) { return std::shared_ptr<Architecture>(Architecture::from_model_dir(dir)); },
                  py::arg("model_dir"))
      .def_static("from_config_file", [](const std::string& path) { return std::shared_ptr<Architecture>(Architecture::from_config_file(path)); },
                  py::arg("config_path"))
      .def_static("supported_model_types", &Architecture::supported_model_types)
      .def_property_readonly("family", [](const Architecture& a) { return graft::arch::family_name(a.family()); })
      .def_property_readonly("model_type", [](const Architecture& a) { return a.spec().model_type; })
      .def_property_readonly("num_layers", &Architecture::num_layers)
      .def_property_readonly("hidden_size", &Architecture::hidden_size)
      .def_property_readonly("vocab_size", &Architecture::vocab_size)
      .def("intermediate_size_for_layer", &Architecture::intermediate_size_for_layer, py::arg("layer"))
      .def("head_dim_for_layer", &Architecture::head_dim_for_layer, py::arg("layer"))
      .def("num_q_heads_for_layer", &Architecture::num_q_heads_for_layer, py::arg("layer"))
      .def("num_kv_heads_for_layer", &Architecture::num_kv_heads_for_layer, py::arg("layer"))
      .def("kv_source", &Architecture::kv_source, py::arg("layer"))
      .def("has_v_proj", &Architecture::has_v_proj, py::arg("layer"))
      .def("is_sliding", &Architecture::is_sliding, py::arg("layer"))
      .def("sliding_window", &Architecture::sliding_window, py::arg("layer"))
      .def("attention_scale", &Architecture::attention_scale, py::arg("layer"))
      .def("rope_for_layer", [](const Architecture& a, int i) { return rope_dict(a.rope_for_layer(i)); }, py::arg("layer"))
      .def("mlp_down_projection", [](const Architecture& a, int i) { return a.mlp_down_projection(i).weight; }, py::arg("layer"))
      .def_property_readonly("has_per_layer_embeddings", &Architecture::has_per_layer_embeddings)
      .def("parameter_count", &Architecture::parameter_count)
      .def("expected_tensors", [](const Architecture& a) {
        std::vector<std::pair<std::string, std::vector<int64_t>>> out;
        for (const auto& t : a.expected_tensors()) out.emplace_back(t.name, t.shape);
        return out;
      });
}
