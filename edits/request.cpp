#include "edits/request.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "edits/text.h"

namespace graft::edits {
namespace {

std::string where(const std::string& source, size_t index, const std::string& key) {
  return source + ": request " + std::to_string(index) + (key.empty() ? "" : " \"" + key + "\"");
}

std::string string_field(const nlohmann::json& r, const std::string& key, const std::string& source, size_t index,
                         bool required) {
  if (!r.contains(key) || r[key].is_null()) {
    if (required) throw InputError(where(source, index, key) + " is missing");
    return {};
  }
  // CounterFact's own files nest targets as {"str": ...}; accept both forms.
  if (r[key].is_object() && r[key].contains("str") && r[key]["str"].is_string())
    return r[key]["str"].get<std::string>();
  if (!r[key].is_string()) throw InputError(where(source, index, key) + " must be a string");
  return r[key].get<std::string>();
}

std::string with_leading_space(std::string target) {
  if (!target.empty() && target.front() != ' ') target.insert(target.begin(), ' ');
  return target;
}

EditRequest parse_one(const nlohmann::json& r, const std::string& source, size_t index) {
  if (!r.is_object()) throw InputError(where(source, index, "") + " must be an object");
  EditRequest request;
  if (r.contains("case_id") && r["case_id"].is_number_integer()) request.case_id = r["case_id"].get<int64_t>();
  request.relation = string_field(r, "relation", source, index, false);
  request.prompt = string_field(r, "prompt", source, index, true);
  request.subject = string_field(r, "subject", source, index, true);
  request.target_new = with_leading_space(string_field(r, "target_new", source, index, true));
  const std::string truth = string_field(r, "target_true", source, index, false);
  if (!truth.empty()) request.target_true = with_leading_space(truth);

  const size_t slot = request.prompt.find("{}");
  if (slot == std::string::npos || request.prompt.find("{}", slot + 2) != std::string::npos)
    throw InputError(where(source, index, "prompt") + " must contain \"{}\" exactly once (where the subject goes)");
  if (request.subject.empty()) throw InputError(where(source, index, "subject") + " is empty");
  if (request.target_new.size() <= 1) throw InputError(where(source, index, "target_new") + " is empty");

  if (r.contains("paraphrase_prompts")) {
    if (!r["paraphrase_prompts"].is_array())
      throw InputError(where(source, index, "paraphrase_prompts") + " must be a list");
    for (const auto& p : r["paraphrase_prompts"]) {
      if (!p.is_string()) throw InputError(where(source, index, "paraphrase_prompts") + " must hold strings");
      request.paraphrase_prompts.push_back(p.get<std::string>());
    }
  }
  if (r.contains("neighborhood_prompts")) {
    if (!r["neighborhood_prompts"].is_array())
      throw InputError(where(source, index, "neighborhood_prompts") + " must be a list");
    for (const auto& n : r["neighborhood_prompts"]) {
      if (!n.is_object() || !n.contains("prompt") || !n["prompt"].is_string() || !n.contains("target") ||
          !n["target"].is_string())
        throw InputError(where(source, index, "neighborhood_prompts") +
                         " entries need \"prompt\" and \"target\" strings");
      request.neighborhood_prompts.push_back(
          {n["prompt"].get<std::string>(), with_leading_space(n["target"].get<std::string>())});
    }
  }
  return request;
}

}  // namespace

std::string EditRequest::filled_prompt() const { return fill_template(prompt, subject); }

std::vector<EditRequest> parse_requests(const nlohmann::json& json, const std::string& source) {
  std::vector<EditRequest> out;
  if (json.is_object()) {
    out.push_back(parse_one(json, source, 0));
  } else if (json.is_array()) {
    for (size_t i = 0; i < json.size(); ++i) out.push_back(parse_one(json[i], source, i));
  } else {
    throw InputError(source + ": expected a JSON list of edit requests");
  }
  if (out.empty()) throw InputError(source + ": no edit requests");
  return out;
}

std::vector<EditRequest> load_requests(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open the requests file");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  return parse_requests(json, path);
}

nlohmann::json request_to_json(const EditRequest& r) {
  nlohmann::json j = {{"prompt", r.prompt}, {"subject", r.subject}, {"target_new", r.target_new}};
  if (r.case_id) j["case_id"] = *r.case_id;
  if (!r.relation.empty()) j["relation"] = r.relation;
  if (r.target_true) j["target_true"] = *r.target_true;
  return j;
}

}  // namespace graft::edits
