// The editors' rows of `graft bench --sections editors`, on the models that have a tokenizer (the
// bundled facts models, and the random Gemma 4 E2B-shaped model given the facts tokenizer): key
// statistics, one ROME edit with the published settings and with graft's, a joint MEMIT batch, and
// a ROME evaluation, each split by phase and by where LibTorch spent the time (bench/op_profile.h).
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

#include "bench/bench.h"

namespace graft {
class Model;
}

namespace graft::bench {

nlohmann::json measure_editors(const std::string& name, Model& model, const Options& options,
                               const std::function<void(const std::string&)>& log);

// The editors' table of one model's results (empty when it has none).
std::string format_editor_rows(const nlohmann::json& result);

}  // namespace graft::bench
