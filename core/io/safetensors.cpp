// SafetensorsFile: parse and validate one file's header, then hand out zero-copy views.
//
// Layout: u64 little-endian header length N, N bytes of JSON, then the data section. The JSON is an
// object: an optional "__metadata__" (string -> string) and one entry per tensor,
//   "name": {"dtype": "F32", "shape": [64, 192], "data_offsets": [begin, end]}
// with offsets relative to the start of the data section. Nothing in the header is trusted: every
// offset is checked against the bytes actually present before a pointer is formed, so a truncated
// or hostile file ends in a FormatError, never in an out-of-bounds read.
//
// Leniencies (deliberate, documented): gaps between tensors and trailing bytes after the last one
// are accepted (the Python reader rejects both); zero-byte tensors never count as overlapping;
// unknown keys inside a tensor entry are ignored, as the Python reader does.
#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/io/detail.h"
#include "core/io/safetensors.h"

namespace graft::io {
namespace {

using Json = nlohmann::json;

constexpr size_t kLengthPrefix = 8;
// The Python/Rust reader's own bound; a larger header is corruption, not a model.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw FormatError(path + ": " + problem);
}

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& problem) {
  throw FormatError(path + ": tensor " + detail::quoted(name) + ": " + problem);
}

uint64_t read_u64_le(const std::byte* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<uint64_t>(p[i]);
  return value;
}

// Returns the header length after checking that the header fits in the file.
size_t read_header_length(const MappedFile& file) {
  const std::string& path = file.path();
  if (file.size() < kLengthPrefix)
    fail(path, "file is " + std::to_string(file.size()) +
                   " bytes, shorter than the 8-byte header length (file is truncated?)");
  const uint64_t length = read_u64_le(file.data());
  if (length > file.size() - kLengthPrefix)
    fail(path, "header length " + std::to_string(length) + " runs past the end of the file (" +
                   std::to_string(file.size()) + " bytes; file is truncated or not safetensors?)");
  if (length > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(length) + " is absurd (limit " + std::to_string(kMaxHeaderBytes) +
                   " bytes)");
  return static_cast<size_t>(length);
}

// Deeper than any safetensors header needs (root -> tensor -> shape is 3). The bound keeps every
// recursive operation on the parsed value (copy, dump) far from the stack limit.
constexpr size_t kMaxNesting = 16;

// A first, allocation-light pass over the header (nlohmann's SAX interface) that finds what the
// DOM parser would hide or choke on: duplicate keys at any depth (the DOM keeps the last one
// silently, and a duplicated tensor name means two byte ranges claim one tensor), nesting beyond
// kMaxNesting, and the order of the top-level keys (the DOM's std::map sorts them; ordered_json
// keeps order but inserts in linear time, and its parser callback rescans siblings: quadratic on a
// hostile header). Each handler returns false to stop the scan at the first problem.
class HeaderScan {
 public:
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(Json::number_integer_t) { return true; }
  bool number_unsigned(Json::number_unsigned_t) { return true; }
  bool number_float(Json::number_float_t, const std::string&) { return true; }
  bool string(std::string&) { return true; }
  bool binary(Json::binary_t&) { return true; }
  bool start_object(size_t) { return open(true); }
  bool start_array(size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(std::string& key) {
    if (!keys_per_object_.back().insert(key).second) {
      problem_ = "header has the key " + detail::quoted(key) + " twice";
      return false;
    }
    if (open_is_object_.size() == 1) top_level_keys_.push_back(key);
    return true;
  }
  template <typename Exception>
  bool parse_error(size_t, const std::string&, const Exception& error) {
    problem_ = "header is not valid JSON: " + detail::printable(error.what());
    return false;
  }

  const std::string& problem() const { return problem_; }  // "" when the scan found none
  std::vector<std::string>& top_level_keys() { return top_level_keys_; }

 private:
  bool open(bool is_object) {
    if (open_is_object_.size() >= kMaxNesting) {
      problem_ = "header nests deeper than " + std::to_string(kMaxNesting) + " levels";
      return false;
    }
    open_is_object_.push_back(is_object);
    if (is_object) keys_per_object_.emplace_back();
    return true;
  }
  bool close() {
    if (open_is_object_.back()) keys_per_object_.pop_back();
    open_is_object_.pop_back();
    return true;
  }

  std::vector<bool> open_is_object_;                    // one entry per open container
  std::vector<std::set<std::string>> keys_per_object_;  // one set per open object
  std::vector<std::string> top_level_keys_;
  std::string problem_;
};

struct Header {
  Json json;
  std::vector<std::string> order;  // top-level keys as the file lists them
};

Header parse_header_json(const std::string& path, const char* begin, const char* end) {
  HeaderScan scan;
  const bool scanned = Json::sax_parse(begin, end, &scan);
  if (!scanned) fail(path, scan.problem().empty() ? "header is not valid JSON" : scan.problem());
  Header header;
  try {
    header.json = Json::parse(begin, end);  // cannot fail after the scan, but stays checked
  } catch (const Json::exception& e) {
    fail(path, "header is not valid JSON: " + detail::printable(e.what()));
  }
  if (!header.json.is_object())
    fail(path, std::string("header is JSON but not an object (it is ") + header.json.type_name() + ")");
  header.order = std::move(scan.top_level_keys());
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const Json& value) {
  if (!value.is_object())
    fail(path, std::string("__metadata__ must be an object of strings, not ") + value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      fail(path, "__metadata__ " + detail::quoted(key) + " must be a string, not " + item.type_name());
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// A JSON value for an error message, cut short: a hostile header may hold megabytes in one array.
std::string excerpt(const Json& value) {
  constexpr size_t kMaxChars = 80;
  return detail::printable(value.dump(), kMaxChars);
}

// A JSON number that is a non-negative integer no larger than `max`, or nullopt.
std::optional<uint64_t> non_negative_integer(const Json& value, uint64_t max) {
  uint64_t result;
  if (value.is_number_unsigned()) {
    result = value.get<uint64_t>();
  } else if (value.is_number_integer()) {
    const int64_t signed_value = value.get<int64_t>();
    if (signed_value < 0) return std::nullopt;
    result = static_cast<uint64_t>(signed_value);
  } else {
    return std::nullopt;
  }
  if (result > max) return std::nullopt;
  return result;
}

// The dims of "shape"; the element count must fit in int64 so numel() cannot overflow later.
std::vector<int64_t> parse_shape(const std::string& path, const std::string& name, const Json& entry) {
  const auto it = entry.find("shape");
  if (it == entry.end()) fail_tensor(path, name, "no \"shape\"");
  if (!it->is_array()) fail_tensor(path, name, std::string("\"shape\" must be an array, not ") + it->type_name());
  constexpr auto kMaxDim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  bool overflow = false;
  for (const auto& dim_json : *it) {
    const auto dim = non_negative_integer(dim_json, kMaxDim);
    if (!dim)
      fail_tensor(path, name,
                  "\"shape\" element " + excerpt(dim_json) + ": dimensions must be integers between 0 and 2^63-1");
    shape.push_back(static_cast<int64_t>(*dim));
    // After an overflow, stop multiplying but keep validating the remaining dims: a zero dim
    // anywhere makes the product 0 and the tensor legal however big the other dims are.
    overflow = overflow || __builtin_mul_overflow(numel, *dim, &numel);
  }
  const bool empty = std::find(shape.begin(), shape.end(), 0) != shape.end();
  if (!empty && (overflow || numel > kMaxDim))
    fail_tensor(path, name, "\"shape\" " + detail::shape_string(shape) + " has more elements than fit in 64 bits");
  return shape;
}

DType parse_entry_dtype(const std::string& path, const std::string& name, const Json& entry) {
  const auto it = entry.find("dtype");
  if (it == entry.end()) fail_tensor(path, name, "no \"dtype\"");
  if (!it->is_string()) fail_tensor(path, name, std::string("\"dtype\" must be a string, not ") + it->type_name());
  return parse_dtype(it->get<std::string>(), path + ": tensor " + detail::quoted(name));
}

struct Offsets {
  uint64_t begin;
  uint64_t end;
  std::string text() const { return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]"; }
};

Offsets parse_offsets(const std::string& path, const std::string& name, const Json& entry) {
  const auto it = entry.find("data_offsets");
  if (it == entry.end()) fail_tensor(path, name, "no \"data_offsets\"");
  if (!it->is_array() || it->size() != 2)
    fail_tensor(path, name, "\"data_offsets\" " + excerpt(*it) + " must be [begin, end]");
  const auto begin = non_negative_integer((*it)[0], std::numeric_limits<uint64_t>::max());
  const auto end = non_negative_integer((*it)[1], std::numeric_limits<uint64_t>::max());
  if (!begin || !end) fail_tensor(path, name, "\"data_offsets\" " + excerpt(*it) + " must be non-negative integers");
  return {*begin, *end};
}

// Checks offsets against the data section and against dtype x shape.
void check_offsets(const std::string& path, const TensorView& view, const Offsets& offsets,
                   uint64_t data_section_bytes) {
  const std::string where = "data_offsets " + offsets.text();
  if (offsets.begin > offsets.end) fail_tensor(path, view.name, where + ": begin is after end");
  if (offsets.end > data_section_bytes)
    fail_tensor(path, view.name,
                where + " end past the end of the file (the data section has " + std::to_string(data_section_bytes) +
                    " bytes; file is truncated?)");
  // numel fits in int64 (parse_shape); times a dtype size of at most 8 it may still overflow.
  uint64_t expected = 0;
  const bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(view.numel()), dtype_size(view.dtype), &expected);
  if (overflow || offsets.end - offsets.begin != expected)
    fail_tensor(path, view.name,
                where + " hold " + std::to_string(offsets.end - offsets.begin) + " bytes but " +
                    dtype_name(view.dtype) + " " + detail::shape_string(view.shape) + " needs " +
                    (overflow ? std::string("more than 2^64") : std::to_string(expected)));
}

struct Placed {
  size_t index;  // into the tensor list
  Offsets offsets;
};

// Two tensors sharing bytes would let a patch to one silently change the other.
void check_no_overlap(const std::string& path, const std::vector<TensorView>& tensors, std::vector<Placed> placed) {
  std::sort(placed.begin(), placed.end(), [](const Placed& a, const Placed& b) {
    return a.offsets.begin != b.offsets.begin ? a.offsets.begin < b.offsets.begin : a.offsets.end < b.offsets.end;
  });
  const Placed* furthest = nullptr;  // the non-empty tensor reaching furthest so far
  for (const auto& current : placed) {
    if (current.offsets.begin == current.offsets.end) continue;
    if (furthest != nullptr && current.offsets.begin < furthest->offsets.end)
      fail(path, "tensors " + detail::quoted(tensors[furthest->index].name) + " (data_offsets " +
                     furthest->offsets.text() + ") and " + detail::quoted(tensors[current.index].name) +
                     " (data_offsets " + current.offsets.text() + ") overlap");
    if (furthest == nullptr || current.offsets.end > furthest->offsets.end) furthest = &current;
  }
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) { return parse(MappedFile::open(path)); }

SafetensorsFile SafetensorsFile::parse(std::shared_ptr<MappedFile> file) {
  if (!file) throw Error("graft::io::SafetensorsFile::parse: no file");
  const std::string& path = file->path();
  const size_t header_bytes = read_header_length(*file);
  const auto* header_begin = reinterpret_cast<const char*>(file->data() + kLengthPrefix);
  const Header header = parse_header_json(path, header_begin, header_begin + header_bytes);

  const size_t data_start = kLengthPrefix + header_bytes;
  const uint64_t data_section_bytes = file->size() - data_start;
  SafetensorsFile result;
  std::vector<Placed> placed;
  for (const std::string& name : header.order) {
    const Json& entry = header.json.at(name);
    if (name == kMetadataKey) {
      result.metadata_ = parse_metadata(path, entry);
      continue;
    }
    if (!entry.is_object()) fail_tensor(path, name, std::string("entry must be an object, not ") + entry.type_name());
    TensorView view;
    view.name = name;
    view.dtype = parse_entry_dtype(path, name, entry);
    view.shape = parse_shape(path, name, entry);
    const Offsets offsets = parse_offsets(path, name, entry);
    check_offsets(path, view, offsets, data_section_bytes);
    view.nbytes = static_cast<size_t>(offsets.end - offsets.begin);
    view.data = file->mutable_data() + data_start + offsets.begin;
    view.file = file;
    placed.push_back({result.tensors_.size(), offsets});
    result.index_.emplace(name, result.tensors_.size());
    result.tensors_.push_back(std::move(view));
  }
  check_no_overlap(path, result.tensors_, std::move(placed));
  result.file_ = std::move(file);
  return result;
}

const std::string& SafetensorsFile::path() const {
  static const std::string kNoFile;
  return file_ ? file_->path() : kNoFile;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& tensor : tensors_) names.push_back(tensor.name);
  return names;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) != 0; }

const TensorView& SafetensorsFile::get(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end())
    throw InputError(path() + ": no tensor " + detail::quoted(name) + detail::did_you_mean(name, names()));
  return tensors_[it->second];
}

}  // namespace graft::io
