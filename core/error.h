// One error type for the whole project. It carries the context where it is known (a file, a tensor,
// a layer, an argument) so that the CLI can print a single line and exit with code 2, and Python can
// raise an exception with the same words.
#pragma once

#include <stdexcept>
#include <string>

namespace graft {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Thrown for bad user input (a path, an argument, a config value). The CLI maps it to exit code 2.
class InputError : public Error {
 public:
  using Error::Error;
};

// Thrown when a file exists but its content is wrong: truncated, corrupt, inconsistent.
class FormatError : public InputError {
 public:
  using InputError::InputError;
};

}  // namespace graft
