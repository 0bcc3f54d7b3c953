// The option structs of edits/ as Python classes: graft.RomeOptions() etc. are the C++ defaults
// themselves, so the Python wrappers (python/graft/edits.py) never restate a default. Fields are
// read-write with the C++ names; enums cross as their CLI spellings.
#include <torch/csrc/utils/pybind.h>

#include <nlohmann/json.hpp>

#include "bindings/python/json_bridge.h"
#include "edits/crown_scan.h"
#include "edits/evaluate.h"
#include "edits/memit.h"
#include "edits/rome.h"
#include "edits/stats.h"

namespace py = pybind11;
namespace ed = graft::edits;

namespace {

// What every option class offers: a dict of its fields and a repr that shows it.
template <typename Options, typename Class>
void add_common(Class& cls, const char* name) {
  cls.def(py::init<>(), "The defaults (the values graft uses when none is given)")
      .def(
          "to_dict", [](const Options& o) { return graft::bindings::to_python(ed::to_json(o)); },
          "Every field, as a dict")
      .def("__repr__",
           [name](const Options& o) { return std::string("<graft.") + name + " " + ed::to_json(o).dump() + ">"; });
}

// The fields every editor shares (EditorOptions), on an editor's options class.
template <typename Options, typename Class>
void add_editor_fields(Class& cls) {
  cls.def_readwrite("value", &Options::value, "The value optimisation (graft.ValueOptions)")
      .def_property(
          "templates",
          [](const Options& o) {
            std::vector<std::pair<int64_t, int64_t>> out;
            for (const auto& t : o.templates) out.emplace_back(t.tokens, t.count);
            return out;
          },
          [](Options& o, const std::vector<std::pair<int64_t, int64_t>>& specs) {
            o.templates.clear();
            for (const auto& [tokens, count] : specs) o.templates.push_back({tokens, count});
          },
          "Context templates besides the bare \"{}\": (tokens, count) pairs")
      .def_property(
          "fact_token", [](const Options& o) { return std::string(ed::fact_token_name(o.fact_token)); },
          [](Options& o, const std::string& name) { o.fact_token = ed::parse_fact_token(name); },
          "\"last\", \"traced\" or \"subject\"")
      .def_readwrite("traced_tokens", &Options::traced_tokens)
      .def_readwrite("seed", &Options::seed);
}

void bind_value_and_trace_options(py::module_& m) {
  py::class_<ed::ValueOptions> value(m, "ValueOptions", "The value optimisation ROME and MEMIT share");
  add_common<ed::ValueOptions>(value, "ValueOptions");
  value.def_readwrite("steps", &ed::ValueOptions::steps)
      .def_readwrite("learning_rate", &ed::ValueOptions::learning_rate)
      .def_readwrite("weight_decay", &ed::ValueOptions::weight_decay)
      .def_readwrite("kl_factor", &ed::ValueOptions::kl_factor)
      .def_readwrite("clamp_norm_factor", &ed::ValueOptions::clamp_norm_factor)
      .def_readwrite("stop_loss", &ed::ValueOptions::stop_loss)
      .def_readwrite("bare_prompt_weight", &ed::ValueOptions::bare_prompt_weight,
                     "negative: every context counts the same")
      .def_readwrite("leakage_weight", &ed::ValueOptions::leakage_weight)
      .def_readwrite("chunk_tokens", &ed::ValueOptions::chunk_tokens,
                     "padded tokens per forward pass (0: automatic); changes only the order of float32 sums");

  py::class_<ed::TraceOptions> trace(m, "TraceOptions", "The corruption causal tracing uses");
  add_common<ed::TraceOptions>(trace, "TraceOptions");
  trace.def_readwrite("samples", &ed::TraceOptions::samples)
      .def_readwrite("noise", &ed::TraceOptions::noise)
      .def_readwrite("seed", &ed::TraceOptions::seed);

  py::class_<ed::CrownScanOptions> crown(m, "CrownScanOptions", "crown-scan's options");
  add_common<ed::CrownScanOptions>(crown, "CrownScanOptions");
  crown.def_readwrite("tracing", &ed::CrownScanOptions::tracing)
      .def_readwrite("window", &ed::CrownScanOptions::window, "0: 10, at most half the depth")
      .def_readwrite("trace", &ed::CrownScanOptions::trace);
}

void bind_editor_options(py::module_& m) {
  py::class_<ed::RomeOptions> rome(m, "RomeOptions", "ROME's options; the defaults are graft's");
  add_common<ed::RomeOptions>(rome, "RomeOptions");
  add_editor_fields<ed::RomeOptions>(rome);
  rome.def_readwrite("layer", &ed::RomeOptions::layer)
      .def_readwrite("covariance_adjustment", &ed::RomeOptions::covariance_adjustment)
      .def_readwrite("consistent_keys", &ed::RomeOptions::consistent_keys)
      .def_readwrite("through_update", &ed::RomeOptions::through_update);

  py::class_<ed::MemitOptions> memit(m, "MemitOptions", "MEMIT's options; the defaults are graft's");
  add_common<ed::MemitOptions>(memit, "MemitOptions");
  add_editor_fields<ed::MemitOptions>(memit);
  memit.def_readwrite("layers", &ed::MemitOptions::layers)
      .def_readwrite("covariance_weight", &ed::MemitOptions::covariance_weight)
      .def_property(
          "targets", [](const ed::MemitOptions& o) { return std::string(ed::memit_targets_name(o.targets)); },
          [](ed::MemitOptions& o, const std::string& name) { o.targets = ed::parse_memit_targets(name); },
          "\"auto\", \"residual\", \"per-layer\" or \"joint\"");
}

void bind_run_options(py::module_& m) {
  py::class_<ed::StatsOptions> stats(m, "StatsOptions", "How key statistics are collected");
  add_common<ed::StatsOptions>(stats, "StatsOptions");
  stats.def_readwrite("layers", &ed::StatsOptions::layers, "empty: every layer")
      .def_readwrite("max_tokens", &ed::StatsOptions::max_tokens)
      .def_readwrite("window", &ed::StatsOptions::window)
      .def_readwrite("batch_size", &ed::StatsOptions::batch_size);

  py::class_<ed::EvaluateOptions> evaluate(m, "EvaluateOptions", "How evaluation batches its sequences");
  add_common<ed::EvaluateOptions>(evaluate, "EvaluateOptions");
  evaluate.def_readwrite("batch_size", &ed::EvaluateOptions::batch_size, "0: as many as fit");
}

}  // namespace

void bind_options(py::module_& m) {
  bind_value_and_trace_options(m);
  bind_editor_options(m);
  bind_run_options(m);
}
