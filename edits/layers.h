// The layer lists editors and statistics take: checked once, the same way everywhere.
#pragma once

#include <vector>

namespace graft {
class Model;
}

namespace graft::edits {

// `layers` sorted, without repeats, each in [0, num_layers). Empty stays empty (the caller decides
// what that means). InputError naming --layers for a layer out of range.
std::vector<int> checked_layers(const Model& model, std::vector<int> layers);

}  // namespace graft::edits
