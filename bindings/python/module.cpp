// graft._graft: the native half of `import graft`. Each area binds itself in its own file.
#include <pybind11/pybind11.h>

#include "core/error.h"

namespace py = pybind11;

void bind_tokenizer(py::module_& m);
void bind_arch(py::module_& m);
void bind_model(py::module_& m);
void bind_edits(py::module_& m);

PYBIND11_MODULE(_graft, m) {
  m.doc() = "graft native module: architecture traits, tokenizer, forward pass, hooks and editors";
  m.attr("__version__") = GRAFT_VERSION;
  // graft's input errors become ValueError with the same message (file, tensor, argument named).
  py::register_exception<graft::InputError>(m, "GraftError", PyExc_ValueError);
  bind_tokenizer(m);
  bind_arch(m);
  bind_model(m);
  bind_edits(m);
}
