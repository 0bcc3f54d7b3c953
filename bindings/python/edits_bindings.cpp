// Python view of edits/ (vectors of bound types are returned as copied lists): edit requests, key statistics, crown-scan, ROME, MEMIT, patches and
// CounterFact-style evaluation. The C++ types are bound as they are (read-only fields, same names);
// JSON crosses as Python dicts. Long computations release the GIL: they call no Python code.
#include <torch/csrc/utils/pybind.h>

#include <nlohmann/json.hpp>

#include "bindings/python/json_bridge.h"

#include "core/error.h"
#include "core/model.h"
#include "edits/crown_scan.h"
#include "edits/editor.h"
#include "edits/evaluate.h"
#include "edits/memit.h"
#include "edits/patch.h"
#include "edits/request.h"
#include "edits/rome.h"
#include "edits/stats.h"

namespace py = pybind11;
using graft::Model;
namespace ed = graft::edits;

namespace {

using graft::bindings::from_python;
using graft::bindings::to_python;

// A str or os.PathLike path as a string.
std::string fspath(const py::object& path) { return py::str(py::module_::import("os").attr("fspath")(path)); }

ed::EditRequest request_from_dict(const py::dict& fields) {
  auto parsed = ed::parse_requests(from_python(fields), "<request>");
  if (parsed.size() != 1) throw graft::InputError("<request>: expected one request");
  return parsed.front();
}

py::dict entry_dict(const ed::PatchEntry& e) {
  py::dict d;
  d["tensor"] = e.tensor;
  d["layer"] = e.layer;
  d["kind"] = ed::update_kind_name(e.kind);
  d["shape"] = e.shape;
  d["layout"] = ed::weight_layout_name(e.layout);
  d["rank"] = e.rank;
  return d;
}

void bind_requests(py::module_& m) {
  py::class_<ed::NeighborhoodPrompt>(m, "NeighborhoodPrompt",
                                     "A prompt about another subject and the answer it must keep")
      .def_readonly("prompt", &ed::NeighborhoodPrompt::prompt)
      .def_readonly("target", &ed::NeighborhoodPrompt::target);

  py::class_<ed::EditRequest>(
      m, "EditRequest", "A CounterFact-style edit request: prompt template with {}, subject, new (and true) target")
      .def_static("from_dict", &request_from_dict, py::arg("fields"),
                  "Build and check one request from a dict with the keys of tests/data/facts/requests.json")
      .def_static(
          "load", [](const py::object& path) { return ed::load_requests(fspath(path)); }, py::arg("path"),
          "Read a JSON file of requests (an array or one object)")
      .def(
          "to_dict", [](const ed::EditRequest& r) { return to_python(ed::request_to_json(r)); },
          "The request as a dict")
      .def("filled_prompt", &ed::EditRequest::filled_prompt, "The prompt with the subject in place of {}")
      .def_readonly("case_id", &ed::EditRequest::case_id)
      .def_readonly("relation", &ed::EditRequest::relation)
      .def_readonly("prompt", &ed::EditRequest::prompt)
      .def_readonly("subject", &ed::EditRequest::subject)
      .def_readonly("target_new", &ed::EditRequest::target_new)
      .def_readonly("target_true", &ed::EditRequest::target_true)
      .def_readonly("paraphrase_prompts", &ed::EditRequest::paraphrase_prompts)
      .def_property_readonly("neighborhood_prompts", [](ed::EditRequest& self) { return self.neighborhood_prompts; })
      .def("__repr__", [](const ed::EditRequest& r) {
        return "<graft.EditRequest " + r.filled_prompt() + " ->" + r.target_new + ">";
      });
}

void bind_statistics(py::module_& m) {
  py::class_<ed::KeyStatistics>(m, "KeyStatistics",
                                "E[k k^T] of blocks.{i}.mlp.hook_post over a text corpus, per layer (float64)")
      .def_static(
          "collect",
          [](const Model& model, const std::vector<std::string>& texts, const ed::StatsOptions& options) {
            py::gil_scoped_release release;
            return ed::KeyStatistics::collect(model, texts, options);
          },
          py::arg("model"), py::arg("texts"), py::arg("options") = ed::StatsOptions(),
          "Run the model over texts and accumulate k k^T (options.layers: [] = all)")
      .def_static(
          "read_corpus", [](const py::object& path) { return ed::KeyStatistics::read_corpus(fspath(path)); },
          py::arg("path"), "One text per non-blank line of a file")
      .def_static(
          "load",
          [](const py::object& path, const Model& model) { return ed::KeyStatistics::load(fspath(path), model); },
          py::arg("path"), py::arg("model"),
          "Load statistics saved for this model; GraftError naming the file and layer otherwise")
      .def(
          "save", [](const ed::KeyStatistics& s, const py::object& path) { s.save(fspath(path)); }, py::arg("path"),
          "Write the statistics as safetensors")
      .def("has_layer", &ed::KeyStatistics::has_layer, py::arg("layer"), "Whether the layer was collected")
      .def_property_readonly("layers", &ed::KeyStatistics::layers, "The collected layers")
      .def("second_moment", &ed::KeyStatistics::second_moment, py::arg("layer"), "E[k k^T], float64 [I, I] on the CPU")
      .def_property_readonly("tokens", &ed::KeyStatistics::tokens, "Tokens accumulated")
      .def_property_readonly("model_type", &ed::KeyStatistics::model_type,
                             "config.json model_type they were collected on")
      .def("__repr__", [](const ed::KeyStatistics& s) {
        return "<graft.KeyStatistics " + s.model_type() + " layers=" + std::to_string(s.layers().size()) +
               " tokens=" + std::to_string(s.tokens()) + ">";
      });
}

void bind_crown_scan(py::module_& m) {
  py::class_<ed::CrownLayer>(m, "CrownLayer", "One layer of a crown-scan: ablation and causal-tracing effects")
      .def_readonly("layer", &ed::CrownLayer::layer)
      .def_readonly("mlp_width", &ed::CrownLayer::mlp_width)
      .def_readonly("ablated_prob", &ed::CrownLayer::ablated_prob)
      .def_readonly("ablation_delta", &ed::CrownLayer::ablation_delta)
      .def_readonly("traced_prob", &ed::CrownLayer::traced_prob)
      .def_readonly("indirect_effect", &ed::CrownLayer::indirect_effect)
      .def_readonly("mlp_traced_prob", &ed::CrownLayer::mlp_traced_prob)
      .def_readonly("mlp_indirect_effect", &ed::CrownLayer::mlp_indirect_effect)
      .def_readonly("window_first", &ed::CrownLayer::window_first)
      .def_readonly("window_last", &ed::CrownLayer::window_last);

  py::class_<ed::CrownScanResult>(m, "CrownScanResult",
                                  "Where a model keeps a fact: per-layer effects and the picked layer")
      .def_readonly("prompt_template", &ed::CrownScanResult::prompt_template)
      .def_readonly("subject", &ed::CrownScanResult::subject)
      .def_readonly("prompt", &ed::CrownScanResult::prompt)
      .def_readonly("tokens", &ed::CrownScanResult::tokens)
      .def_readonly("subject_first", &ed::CrownScanResult::subject_first)
      .def_readonly("subject_last", &ed::CrownScanResult::subject_last)
      .def_readonly("expect", &ed::CrownScanResult::expect)
      .def_readonly("expect_is_model_answer", &ed::CrownScanResult::expect_is_model_answer)
      .def_readonly("expect_token", &ed::CrownScanResult::expect_token)
      .def_readonly("expect_token_text", &ed::CrownScanResult::expect_token_text)
      .def_readonly("top_token_text", &ed::CrownScanResult::top_token_text)
      .def_readonly("top_prob", &ed::CrownScanResult::top_prob)
      .def_readonly("baseline_prob", &ed::CrownScanResult::baseline_prob)
      .def_readonly("corrupted_prob", &ed::CrownScanResult::corrupted_prob)
      .def_property_readonly("layers", [](ed::CrownScanResult& self) { return self.layers; })
      .def_readonly("ablation_layer", &ed::CrownScanResult::ablation_layer)
      .def_readonly("trace_layer", &ed::CrownScanResult::trace_layer)
      .def_readonly("mlp_trace_layer", &ed::CrownScanResult::mlp_trace_layer)
      .def_readonly("picked_layer", &ed::CrownScanResult::picked_layer)
      .def_readonly("picked_by", &ed::CrownScanResult::picked_by)
      .def_readonly("seconds", &ed::CrownScanResult::seconds)
      .def_readonly("forwards", &ed::CrownScanResult::forwards)
      .def(
          "to_dict", [](const ed::CrownScanResult& r) { return to_python(ed::to_json(r)); }, "The result as a dict")
      .def("__str__", &ed::format_crown_scan, "The text report: one row per layer and the picks")
      .def("__repr__", [](const ed::CrownScanResult& r) {
        return "<graft.CrownScanResult " + r.prompt + " picked_layer=" + std::to_string(r.picked_layer) + ">";
      });

  m.def(
      "crown_scan",
      [](const Model& model, const std::string& prompt, const std::string& subject, std::optional<std::string> expect,
         const ed::CrownScanOptions& options) {
        py::gil_scoped_release release;
        return ed::crown_scan(model, prompt, subject, std::move(expect), options);
      },
      py::arg("model"), py::arg("prompt"), py::arg("subject"), py::arg("expect") = py::none(),
      py::arg("options") = ed::CrownScanOptions(),
      "Per-layer ablation and causal tracing of a fact at the subject's last token");
}

void bind_patch(py::module_& m) {
  py::class_<ed::Patch, std::shared_ptr<ed::Patch>>(
      m, "Patch", "Weight updates of MLP down projections for one base model (a patch file)")
      .def_static(
          "load", [](const py::object& path) { return ed::Patch::load(fspath(path)); }, py::arg("path"),
          "Read and validate a patch file; GraftError naming the problem")
      .def(
          "save", [](const ed::Patch& p, const py::object& path) { p.save(fspath(path)); }, py::arg("path"),
          "Write the patch file atomically")
      .def_property_readonly("checksum", &ed::Patch::checksum, "SHA-256 of the body: identifies the patch")
      .def_property_readonly(
          "method", [](const ed::Patch& p) { return p.provenance().method; }, "rome, memit, ...")
      .def_property_readonly("created", &ed::Patch::created, "ISO 8601 UTC")
      .def_property_readonly("graft_version", &ed::Patch::graft_version)
      .def_property_readonly("source", &ed::Patch::source, "The file it was loaded from, or empty")
      .def_property_readonly(
          "model_type", [](const ed::Patch& p) { return p.base().model_type; }, "Base model's model_type")
      .def_property_readonly(
          "entries",
          [](const ed::Patch& p) {
            py::list out;
            for (const auto& e : p.entries()) out.append(entry_dict(e));
            return out;
          },
          "One dict per touched tensor: tensor, layer, kind, shape, layout, rank")
      .def(
          "delta",
          [](const ed::Patch& p, const std::string& tensor) {
            for (const auto& e : p.entries())
              if (e.tensor == tensor) return e.logical_delta();
            throw graft::InputError("the patch does not touch \"" + tensor + "\"");
          },
          py::arg("tensor"), "dW of one tensor, [out, in] float64")
      .def_property_readonly(
          "requests", [](const ed::Patch& p) { return to_python(p.provenance().requests); },
          "The edit requests it was made from")
      .def_property_readonly("hyperparameters",
                             [](const ed::Patch& p) { return to_python(p.provenance().hyperparameters); })
      .def_property_readonly(
          "notes", [](const ed::Patch& p) { return to_python(p.provenance().notes); },
          "Diagnostics the editor recorded")
      .def(
          "header", [](const ed::Patch& p) { return to_python(p.header()); }, "The JSON header as stored")
      .def_property_readonly("max_abs_delta", &ed::Patch::max_abs_delta, "Largest |dW| element")
      .def("__eq__", [](const ed::Patch& a, const ed::Patch& b) { return a.checksum() == b.checksum(); })
      .def("__hash__", [](const ed::Patch& p) { return py::hash(py::str(p.checksum())); })
      .def("__repr__", [](const ed::Patch& p) {
        return "<graft.Patch " + p.provenance().method + " " + p.base().model_type +
               " entries=" + std::to_string(p.entries().size()) + " checksum=" + p.checksum().substr(0, 12) + ">";
      });

  m.def("patch_mismatch", &ed::patch_mismatch, py::arg("model"), py::arg("patch"),
        "Why the patch does not belong to the model, or an empty string");
}

void bind_patch_application(py::module_& m) {
  py::class_<ed::PatchStack>(m, "PatchStack", "Patches applied in memory to one model, revertible bit for bit")
      .def(py::init<Model&>(), py::arg("model"), py::keep_alive<1, 2>())
      .def("apply", &ed::PatchStack::apply, py::arg("patch"),
           "Apply; GraftError (model unchanged) when it does not belong")
      .def("revert", &ed::PatchStack::revert, py::arg("patch"), "Restore the tensors the patch touched")
      .def("revert_all", &ed::PatchStack::revert_all, "Revert every patch, newest first")
      .def("is_applied", &ed::PatchStack::is_applied, py::arg("patch"))
      .def("applied_checksums", &ed::PatchStack::applied_checksums, "Oldest first");

  m.def(
      "apply_patches_to_directory",
      [](const std::string& model_dir, const std::vector<std::shared_ptr<ed::Patch>>& patches,
         const std::string& out_dir, bool overwrite) {
        std::vector<ed::Patch> list;
        for (const auto& p : patches) list.push_back(*p);
        ed::DirectoryWriteOptions options;
        options.overwrite = overwrite;
        py::gil_scoped_release release;
        ed::apply_patches_to_directory(model_dir, list, out_dir, options);
      },
      py::arg("model_dir"), py::arg("patches"), py::arg("out_dir"), py::arg("overwrite") = false,
      "Write out_dir: model_dir with the patches applied and recorded");
  m.def(
      "revert_patch_in_directory",
      [](const std::string& model_dir, const ed::Patch& patch, const std::string& out_dir, bool overwrite) {
        ed::DirectoryWriteOptions options;
        options.overwrite = overwrite;
        py::gil_scoped_release release;
        ed::revert_patch_in_directory(model_dir, patch, out_dir, options);
      },
      py::arg("model_dir"), py::arg("patch"), py::arg("out_dir"), py::arg("overwrite") = false,
      "Write out_dir: model_dir without the patch");
  m.def(
      "verify_patch_in_directory",
      [](const std::string& model_dir, const ed::Patch& patch) {
        const auto r = ed::verify_patch_in_directory(model_dir, patch);
        py::dict d;
        d["belongs"] = r.belongs;
        d["mismatch"] = r.mismatch;
        d["recorded"] = r.recorded;
        d["applied"] = r.applied;
        d["max_error"] = r.max_error;
        d["tolerance"] = r.tolerance;
        d["applied_checksums"] = r.applied_checksums;
        return d;
      },
      py::arg("model_dir"), py::arg("patch"), "Does the patch belong to the directory's model, and is it applied?");
  m.def(
      "read_patch_record", [](const std::string& model_dir) { return to_python(ed::read_patch_record(model_dir)); },
      py::arg("model_dir"), "The graft_patches.json record of a patched directory, or None");
}

void bind_editors(py::module_& m) {
  m.def(
      "rome",
      [](const Model& model, const ed::EditRequest& request, const ed::KeyStatistics& stats,
         const ed::RomeOptions& options) {
        py::gil_scoped_release release;
        return ed::make_patch(model, ed::rome(model, request, stats, options), "rome", {request});
      },
      py::arg("model"), py::arg("request"), py::arg("stats"), py::arg("options"),
      "ROME: a rank-1 update of one layer's MLP down projection, as a Patch (the model is left as it was)");
  m.def(
      "memit",
      [](Model& model, const std::vector<ed::EditRequest>& requests, const ed::KeyStatistics& stats,
         const ed::MemitOptions& options) {
        py::gil_scoped_release release;
        return ed::make_patch(model, ed::memit(model, requests, stats, options), "memit", requests);
      },
      py::arg("model"), py::arg("requests"), py::arg("stats"), py::arg("options"),
      "MEMIT: many requests spread over a range of layers, as a Patch (the model is left as it was)");
}

void bind_evaluation(py::module_& m) {
  py::class_<ed::PromptScore>(m, "PromptScore", "One prompt scored for the wanted answer against its rival")
      .def_readonly("prompt", &ed::PromptScore::prompt)
      .def_readonly("p_wanted", &ed::PromptScore::p_wanted)
      .def_readonly("p_rival", &ed::PromptScore::p_rival)
      .def_readonly("top1", &ed::PromptScore::top1)
      .def_readonly("compared", &ed::PromptScore::compared)
      .def_property_readonly("success", &ed::PromptScore::success)
      .def_property_readonly("magnitude", &ed::PromptScore::magnitude);
  py::class_<ed::RequestEvaluation>(m, "RequestEvaluation",
                                    "Scores of one request's rewrite, paraphrase and neighbour prompts")
      .def_readonly("case_id", &ed::RequestEvaluation::case_id)
      .def_readonly("subject", &ed::RequestEvaluation::subject)
      .def_readonly("target_new", &ed::RequestEvaluation::target_new)
      .def_readonly("target_true", &ed::RequestEvaluation::target_true)
      .def_readonly("rewrite", &ed::RequestEvaluation::rewrite)
      .def_property_readonly("paraphrases", [](ed::RequestEvaluation& self) { return self.paraphrases; })
      .def_property_readonly("neighbors", [](ed::RequestEvaluation& self) { return self.neighbors; });
  py::class_<ed::MetricSummary>(m, "MetricSummary", "A metric's means over requests (fractions in [0, 1])")
      .def_readonly("success", &ed::MetricSummary::success)
      .def_readonly("magnitude", &ed::MetricSummary::magnitude)
      .def_readonly("top1", &ed::MetricSummary::top1)
      .def_readonly("requests", &ed::MetricSummary::requests)
      .def_readonly("prompts", &ed::MetricSummary::prompts)
      .def("__repr__", [](const ed::MetricSummary& s) {
        return "<graft.MetricSummary success=" + std::to_string(s.success) +
               " magnitude=" + std::to_string(s.magnitude) + " top1=" + std::to_string(s.top1) + ">";
      });
  py::class_<ed::EvaluationResult>(
      m, "EvaluationResult", "CounterFact-style scores: efficacy, paraphrase, neighborhood and their harmonic mean")
      .def_property_readonly("requests", [](ed::EvaluationResult& self) { return self.requests; })
      .def_readonly("efficacy", &ed::EvaluationResult::efficacy)
      .def_readonly("paraphrase", &ed::EvaluationResult::paraphrase)
      .def_readonly("neighborhood", &ed::EvaluationResult::neighborhood)
      .def_readonly("score", &ed::EvaluationResult::score)
      .def_readonly("sequences", &ed::EvaluationResult::sequences)
      .def_readonly("forwards", &ed::EvaluationResult::forwards)
      .def_readonly("seconds", &ed::EvaluationResult::seconds)
      .def(
          "to_dict",
          [](const ed::EvaluationResult& r, bool per_request) { return to_python(ed::to_json(r, per_request)); },
          py::arg("per_request") = true, "{'summary': ..., 'requests': [...]}")
      .def("__str__", &ed::format_evaluation, "The summary table in percent")
      .def("__repr__", [](const ed::EvaluationResult& r) {
        return "<graft.EvaluationResult score=" + std::to_string(r.score) +
               " requests=" + std::to_string(r.requests.size()) + ">";
      });

  m.def(
      "evaluate",
      [](const Model& model, const std::vector<ed::EditRequest>& requests, const ed::EvaluateOptions& options) {
        py::gil_scoped_release release;
        return ed::evaluate(model, requests, options);
      },
      py::arg("model"), py::arg("requests"), py::arg("options") = ed::EvaluateOptions(),
      "Score the model as it is on the requests (each needs target_true)");
  m.def("format_comparison", &ed::format_comparison, py::arg("before"), py::arg("after"),
        "Before and after an edit, side by side, with the change");
}

}  // namespace

void bind_options(py::module_& m);

void bind_edits(py::module_& m) {
  bind_options(m);
  bind_requests(m);
  bind_statistics(m);
  bind_crown_scan(m);
  bind_patch(m);
  bind_patch_application(m);
  bind_editors(m);
  bind_evaluation(m);
}
