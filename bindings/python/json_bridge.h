// JSON across the Python boundary: nlohmann::json to and from Python objects, through the json
// module, so that every binding converts the same way.
#pragma once

#include <torch/csrc/utils/pybind.h>

#include <nlohmann/json.hpp>
#include <string>

namespace graft::bindings {

inline pybind11::object to_python(const nlohmann::json& value) {
  return pybind11::module_::import("json").attr("loads")(value.dump());
}

inline nlohmann::json from_python(const pybind11::handle& value) {
  const std::string text = pybind11::str(pybind11::module_::import("json").attr("dumps")(value));
  return nlohmann::json::parse(text);
}

}  // namespace graft::bindings
