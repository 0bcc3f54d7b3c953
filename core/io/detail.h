// Helpers shared by the core/io sources and nothing else (not part of the public contract).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace graft::io::detail {

// "[2, 20, 64]", the way shapes appear in every error message of this layer.
std::string shape_string(const std::vector<int64_t>& shape);

// `"name"` with quotes, for error messages (a tensor name may contain spaces or be empty), passed
// through printable() and cut to a couple of hundred characters.
std::string quoted(const std::string& name);

// The candidate most likely meant when `wanted` is not found, or "" when none is close: a name that
// differs only by a dotted prefix ("model." missing or extra) wins, then the smallest edit distance
// within a small budget. Used to say "did you mean ...?" in not-found errors.
std::string closest_name(const std::string& wanted, const std::vector<std::string>& candidates);

// ", did you mean "x"?" or "" — ready to append to a not-found message.
std::string did_you_mean(const std::string& wanted, const std::vector<std::string>& candidates);

// `text` made safe to show: valid UTF-8 kept, control characters and bytes that are not valid
// UTF-8 written as \xNN, and at most `max_chars` characters kept (then "..."). Error messages pass
// through here whenever they quote bytes from a file, so that Python can always decode them.
std::string printable(const std::string& text, size_t max_chars = std::string::npos);

// strerror(errno) without the thread-safety caveats of strerror.
std::string os_error(int errnum);

}  // namespace graft::io::detail
