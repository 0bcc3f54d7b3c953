// Python view of a loaded model: forward with hooks and caches, generation, weights. Tensors cross
// the boundary as torch.Tensor without copies (torch's own pybind11 casters).
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/utils/pybind.h>

#include "core/error.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/tensor.h"
#include "core/tokenizer/tokenizer.h"

namespace py = pybind11;
using graft::Model;

namespace {

// A Python hook is called as fn(tensor, name) and may return a replacement tensor or None. A
// Python exception propagates out of the forward pass unchanged (error_already_set).
graft::HookFn python_hook(py::function fn) {
  return [fn](const at::Tensor& tensor, const graft::HookName& name) -> std::optional<at::Tensor> {
    py::object result = fn(tensor, name.str());
    if (result.is_none()) return std::nullopt;
    if (!THPVariable_Check(result.ptr()))
      throw graft::InputError("hook \"" + name.str() + "\" returned " + std::string(Py_TYPE(result.ptr())->tp_name) +
                              ", expected a torch.Tensor or None");
    return result.cast<at::Tensor>();
  };
}

struct PyForwardResult {
  at::Tensor logits;
  std::map<std::string, at::Tensor> cache;
};

PyForwardResult forward(const Model& model, const at::Tensor& input_ids,
                        const std::optional<at::Tensor>& attention_mask, const std::optional<at::Tensor>& position_ids,
                        const std::vector<std::pair<std::string, py::function>>& hooks,
                        const std::vector<std::string>& cache_names, bool last_position_only, int stop_after_layers) {
  graft::Hooks hook_set(model.arch().num_layers());
  PyForwardResult result;
  for (const auto& name : cache_names) hook_set.cache(graft::parse_hook_name(name, model.arch()), &result.cache);
  for (const auto& [name, fn] : hooks) hook_set.add(graft::parse_hook_name(name, model.arch()), python_hook(fn));
  graft::ForwardOptions options;
  if (attention_mask) options.attention_mask = *attention_mask;
  if (position_ids) options.position_ids = *position_ids;
  options.hooks = hook_set.empty() ? nullptr : &hook_set;
  options.last_position_only = last_position_only;
  options.stop_after_layers = stop_after_layers;
  at::Tensor ids = input_ids.dim() == 1 ? input_ids.unsqueeze(0) : input_ids;
  result.logits = model.forward(ids, options);
  return result;
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Model, std::shared_ptr<Model>>(m, "Model", "A loaded model (native); use graft.load() for the Python API")
      .def_static(
          "load",
          [](const std::string& dir, const std::string& device, const std::optional<std::string>& dtype) {
            graft::LoadOptions options;
            options.device = device;
            if (dtype) options.dtype = graft::parse_dtype(*dtype);
            return Model::load(dir, options);
          },
          py::arg("model_dir"), py::arg("device") = "cpu", py::arg("dtype") = py::none(),
          "Load a HuggingFace model directory; GraftError naming the file or tensor when it is not one")
      .def_property_readonly("dir", &Model::dir, "The model directory")
      .def_property_readonly(
          "device", [](const Model& model) { return model.device().str(); }, "Device of the weights")
      .def_property_readonly(
          "dtype", [](const Model& model) { return graft::dtype_string(model.dtype()); },
          "Compute dtype: float32, bfloat16 or float16")
      .def_property_readonly(
          "arch",
          [](std::shared_ptr<Model> model) {
            // An aliasing pointer: the architecture keeps its model alive.
            auto& arch = const_cast<graft::arch::Architecture&>(model->arch());
            return std::shared_ptr<graft::arch::Architecture>(model, &arch);
          },
          "The per-layer architecture table (keeps the model alive)")
      .def_property_readonly(
          "tokenizer", [](const Model& model) { return model.tokenizer(); },
          py::return_value_policy::reference_internal, "None when the directory has no tokenizer.json")
      .def("hook_names", &Model::hook_names, "Every hook point name the model offers, in forward order")
      .def(
          "check_hook_name",
          [](const Model& model, const std::string& name) { graft::parse_hook_name(name, model.arch()); },
          py::arg("name"), "GraftError saying why when the model offers no hook point of that name")
      .def(
          "forward",
          [](const Model& model, const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
             const std::optional<at::Tensor>& position_ids,
             const std::vector<std::pair<std::string, py::function>>& hooks, const std::vector<std::string>& cache,
             bool last_position_only, int stop_after_layers) {
            auto result = forward(model, input_ids, attention_mask, position_ids, hooks, cache, last_position_only,
                                  stop_after_layers);
            return py::make_tuple(result.logits, result.cache);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none(), py::arg("position_ids") = py::none(),
          py::arg("hooks") = std::vector<std::pair<std::string, py::function>>{},
          py::arg("cache") = std::vector<std::string>{}, py::arg("last_position_only") = false,
          py::arg("stop_after_layers") = -1,
          "(logits, cache) for input_ids [B, S]; hooks are (name, fn(tensor, name)) pairs, cache a list of names")
      .def(
          "generate",
          [](const Model& model, const at::Tensor& input_ids, const std::optional<at::Tensor>& attention_mask,
             int64_t max_new_tokens, double temperature, int64_t top_k, double top_p, uint64_t seed,
             const std::optional<std::vector<int64_t>>& stop_tokens) {
            graft::GenerateOptions options;
            options.max_new_tokens = max_new_tokens;
            options.temperature = temperature;
            options.top_k = top_k;
            options.top_p = top_p;
            options.seed = seed;
            options.stop_tokens = stop_tokens;
            at::Tensor ids = input_ids.dim() == 1 ? input_ids.unsqueeze(0) : input_ids;
            auto out = graft::generate(model, ids, options, attention_mask.value_or(at::Tensor()));
            return py::make_tuple(out.ids, out.attention_mask);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none(), py::arg("max_new_tokens") = 32,
          py::arg("temperature") = 0.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0, py::arg("seed") = 0,
          py::arg("stop_tokens") = py::none(),
          "(ids, attention_mask) after greedy or sampled generation with the KV cache")
      .def(
          "weight", [](Model& model, const std::string& name) { return model.weight(name); }, py::arg("name"),
          "The live weight tensor behind an HF tensor name (shares memory with the model)")
      .def(
          "weight_names",
          [](const Model& model) {
            std::vector<std::string> names;
            for (const auto& [name, tensor] : model.weights()) names.push_back(name);
            return names;
          },
          "HF names of every weight the model uses, sorted")
      .def_property_readonly("weight_bytes", &Model::weight_bytes, "Bytes of weight data the forward pass reads");
}
