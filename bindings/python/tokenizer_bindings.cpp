// Python view of graft::Tokenizer, with the names and defaults of the C++ class. Errors surface as
// graft's InputError, which the module maps to ValueError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "core/tokenizer/tokenizer.h"

namespace py = pybind11;
using graft::Tokenizer;

void bind_tokenizer(py::module_& m) {
  py::class_<Tokenizer>(m, "Tokenizer",
                        "A HuggingFace tokenizer.json (BPE) that encodes and decodes exactly as HF tokenizers does")
      .def_static("from_file", &Tokenizer::from_file, py::arg("path"),
                  "Load a tokenizer.json; special tokens come only from its post_processor")
      .def_static("from_model_dir", &Tokenizer::from_model_dir, py::arg("path"),
                  "Load tokenizer.json plus tokenizer_config.json / config.json (BOS, EOS, PAD) from a model directory")
      .def_static("from_json_string", &Tokenizer::from_json_string, py::arg("json"),
                  py::arg("source_name") = "tokenizer.json", "Load from the text of a tokenizer.json")
      // The GIL is released while the C++ side works, so threads can tokenize in parallel.
      .def(
          "encode",
          [](const Tokenizer& t, const std::string& text, bool add_special_tokens) {
            py::gil_scoped_release release;
            return t.encode(text, add_special_tokens);
          },
          py::arg("text"), py::arg("add_special_tokens") = false, "Token ids of a string")
      .def(
          "decode",
          [](const Tokenizer& t, const std::vector<int64_t>& ids, bool skip_special_tokens) {
            py::gil_scoped_release release;
            return t.decode(ids, skip_special_tokens);
          },
          py::arg("ids"), py::arg("skip_special_tokens") = false, "The text of a list of token ids")
      .def("token_to_id", &Tokenizer::token_to_id, py::arg("token"), "The id of a token string, or None")
      .def("id_to_token", &Tokenizer::id_to_token, py::arg("id"), "The token string of an id")
      .def_property_readonly("vocab_size", &Tokenizer::vocab_size,
                             "One past the largest token id, added tokens included")
      .def_property_readonly("bos_id", &Tokenizer::bos_id)
      .def_property_readonly("eos_id", &Tokenizer::eos_id)
      .def_property_readonly("pad_id", &Tokenizer::pad_id)
      .def_property_readonly("adds_bos", &Tokenizer::adds_bos, "Whether encode(text, True) starts with a special token")
      .def("__repr__",
           [](const Tokenizer& t) { return "<graft.Tokenizer vocab_size=" + std::to_string(t.vocab_size()) + ">"; });
}
