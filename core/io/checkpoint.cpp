// Checkpoint: every weight of a model directory, whichever way the directory lays them out.
//
// Looked for in this order (the first that exists wins, as in transformers):
//   1. model.safetensors
//   2. model.safetensors.index.json, whose "weight_map" (tensor -> shard file) is authoritative:
//      tensors a shard holds but the index does not list are not part of the checkpoint.
//   3. No index but HF-named shards model-00001-of-0000N.safetensors ... (an index lost in a copy):
//      accepted only when all N shards are present, they agree on N, and no tensor name appears in
//      two shards. Other *.safetensors files (reference outputs, patches) are never picked up, so a
//      directory is never read in a way that depends on which stray files it happens to hold.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/safetensors.h"

namespace graft::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

void require_directory(const std::string& dir) {
  std::error_code ec;
  const auto status = fs::status(dir, ec);
  if (ec) throw InputError("model directory " + dir + ": " + ec.message());
  if (!fs::exists(status)) throw InputError("model directory " + dir + ": no such directory");
  if (!fs::is_directory(status)) throw InputError("model directory " + dir + ": not a directory");
}

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot open for reading");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw InputError(path.string() + ": read failed");
  return text.str();
}

// "weight_map" of an index file: tensor name -> shard file name, validated.
std::map<std::string, std::string> read_weight_map(const fs::path& index_path) {
  const std::string where = index_path.string();
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_text(index_path));
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(where + ": not valid JSON: " + detail::printable(e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw FormatError(where + ": no \"weight_map\" object");
  std::map<std::string, std::string> weight_map;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string())
      throw FormatError(where + ": tensor " + detail::quoted(name) + ": shard must be a file name, not " +
                        shard.type_name());
    const fs::path shard_path(shard.get<std::string>());
    // A shard must live inside the model directory; an index pointing elsewhere is corrupt or hostile.
    const bool escapes = shard_path.is_absolute() || std::any_of(shard_path.begin(), shard_path.end(),
                                                                 [](const fs::path& part) { return part == ".."; });
    if (shard_path.empty() || escapes)
      throw FormatError(where + ": tensor " + detail::quoted(name) + ": shard " + detail::quoted(shard_path.string()) +
                        " is not a file name inside the model directory");
    weight_map.emplace(name, shard_path.string());
  }
  if (weight_map.empty()) throw FormatError(where + ": \"weight_map\" is empty");
  return weight_map;
}

// The complete HF shard set model-00001-of-0000N.safetensors ... in `dir`, or an empty list when
// the directory has no such files. Throws when shards are present but the set is incomplete.
std::vector<std::string> find_unindexed_shards(const fs::path& dir) {
  static const std::regex kShardName(R"(model-(\d{1,9})-of-(\d{1,9})\.safetensors)");
  std::map<long, std::string> by_number;
  std::set<long> totals;
  const std::string context = dir.string() + ": no " + kIndexFile + ", and the shards present";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, match, kShardName)) continue;
    const auto [it, inserted] = by_number.emplace(std::stol(match[1].str()), name);
    if (!inserted) throw FormatError(context + " include both " + it->second + " and " + name);
    totals.insert(std::stol(match[2].str()));
  }
  if (by_number.empty()) return {};
  if (totals.size() != 1) throw FormatError(context + " disagree on the number of shards");
  const long total = *totals.begin();
  for (long n = 1; n <= total; ++n)
    if (by_number.count(n) == 0)
      throw InputError(context + " are incomplete: shard " + std::to_string(n) + " of " + std::to_string(total) +
                       " is missing");
  if (static_cast<long>(by_number.size()) != total)
    throw FormatError(context + " include numbers outside 1.." + std::to_string(total));
  std::vector<std::string> shards;
  for (const auto& [number, name] : by_number) shards.push_back(name);
  return shards;
}

// What the directory does hold, for the "nothing found" error.
std::string list_safetensors_files(const fs::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors") found.push_back(entry.path().filename().string());
  std::sort(found.begin(), found.end());
  if (found.empty()) return "it holds no .safetensors file";
  std::string list;
  for (const auto& name : found) list += (list.empty() ? "" : ", ") + name;
  return "it holds only " + list;
}

// What Checkpoint holds, assembled by one of the three layouts below.
struct Layout {
  std::vector<SafetensorsFile> files;
  std::map<std::string, std::pair<size_t, size_t>> where;  // name -> (file, tensor)

  // Opens a file and registers all its tensors, refusing a name another file already holds.
  void add_whole_file(const std::string& dir, const fs::path& path) {
    const size_t file = files.size();
    files.push_back(SafetensorsFile::open(path.string()));
    const auto& tensors = files.back().tensors();
    for (size_t t = 0; t < tensors.size(); ++t) {
      const auto [it, inserted] = where.emplace(tensors[t].name, std::make_pair(file, t));
      if (!inserted)
        throw FormatError(dir + ": tensor " + detail::quoted(tensors[t].name) + " is in both " +
                          files[it->second.first].path() + " and " + files.back().path());
    }
  }
};

[[noreturn]] void throw_missing_shard(const fs::path& index_path, const fs::path& shard_path, const std::string& shard,
                                      const std::map<std::string, std::string>& weight_map) {
  std::string example;
  for (const auto& [name, listed_shard] : weight_map)
    if (listed_shard == shard) {
      example = name;
      break;
    }
  throw FormatError(index_path.string() + ": shard " + detail::quoted(shard) + " (holding " + detail::quoted(example) +
                    ", ...) is missing: " + shard_path.string() + " does not exist");
}

Layout open_indexed(const fs::path& dir, const fs::path& index_path) {
  const auto weight_map = read_weight_map(index_path);
  Layout layout;
  // Each shard opened once; files in shard-name order so the layout does not depend on the map.
  std::map<std::string, size_t> shard_file;
  for (const auto& entry : weight_map) shard_file.emplace(entry.second, 0);
  for (auto& [shard, file] : shard_file) {
    const fs::path shard_path = dir / shard;
    if (!is_file(shard_path)) throw_missing_shard(index_path, shard_path, shard, weight_map);
    file = layout.files.size();
    layout.files.push_back(SafetensorsFile::open(shard_path.string()));
  }
  for (const auto& [name, shard] : weight_map) {
    const size_t file = shard_file.at(shard);
    const SafetensorsFile& holder = layout.files[file];
    if (!holder.contains(name))
      throw FormatError(index_path.string() + ": tensor " + detail::quoted(name) + " is listed in shard " +
                        detail::quoted(shard) + " but " + holder.path() + " does not contain it");
    const auto position = static_cast<size_t>(&holder.get(name) - holder.tensors().data());
    layout.where.emplace(name, std::make_pair(file, position));
  }
  return layout;
}

Layout open_layout(const std::string& model_dir) {
  const fs::path dir(model_dir);
  Layout layout;
  if (is_file(dir / kSingleFile)) {
    layout.add_whole_file(model_dir, dir / kSingleFile);
    return layout;
  }
  if (is_file(dir / kIndexFile)) return open_indexed(dir, dir / kIndexFile);
  const auto shards = find_unindexed_shards(dir);
  if (shards.empty())
    throw InputError(model_dir + ": no " + kSingleFile + " and no " + kIndexFile + " (" + list_safetensors_files(dir) +
                     ")");
  for (const auto& shard : shards) layout.add_whole_file(model_dir, dir / shard);
  return layout;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& model_dir) {
  require_directory(model_dir);
  Layout layout = open_layout(model_dir);
  Checkpoint checkpoint;
  checkpoint.dir_ = model_dir;
  checkpoint.files_ = std::move(layout.files);
  checkpoint.where_ = std::move(layout.where);
  return checkpoint;
}

bool Checkpoint::contains(const std::string& name) const { return where_.count(name) != 0; }

const TensorView& Checkpoint::get(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end())
    throw InputError(dir_ + ": no tensor " + detail::quoted(name) + " in the checkpoint" +
                     detail::did_you_mean(name, names()));
  const auto [file, tensor] = it->second;
  return files_[file].tensors()[tensor];
}

const TensorView& Checkpoint::get(const std::string& name, const std::vector<int64_t>& expected_shape) const {
  const TensorView& view = get(name);
  if (view.shape != expected_shape)
    throw FormatError(view.file->path() + ": tensor " + detail::quoted(name) + " has shape " +
                      detail::shape_string(view.shape) + ", expected " + detail::shape_string(expected_shape));
  return view;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& entry : where_) names.push_back(entry.first);
  return names;
}

}  // namespace graft::io
