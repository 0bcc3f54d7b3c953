// Edit requests in the CounterFact style (tests/data/facts/requests.json): a prompt template with
// "{}" for the subject, the subject, the new target (and the true one, for evaluation), with
// paraphrases and neighbourhood prompts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace graft::edits {

struct NeighborhoodPrompt {
  std::string prompt;  // complete prompt (subject already in it)
  std::string target;  // the answer it must keep, with its leading space
};

struct EditRequest {
  std::optional<int64_t> case_id;
  std::string relation;
  std::string prompt;  // contains "{}" exactly once
  std::string subject;
  std::string target_new;  // with its leading space (added when missing, as the reference code does)
  std::optional<std::string> target_true;
  std::vector<std::string> paraphrase_prompts;  // complete prompts
  std::vector<NeighborhoodPrompt> neighborhood_prompts;

  std::string filled_prompt() const;  // prompt with the subject in place of "{}"
};

// Reads a JSON array of requests (or one object). InputError naming the file, the index and the key
// for a missing "{}", an empty subject or target, wrong types.
std::vector<EditRequest> load_requests(const std::string& path);
std::vector<EditRequest> parse_requests(const nlohmann::json& json, const std::string& source);
nlohmann::json request_to_json(const EditRequest& request);

}  // namespace graft::edits
