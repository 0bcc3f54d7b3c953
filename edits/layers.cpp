#include "edits/layers.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "core/model.h"

namespace graft::edits {

std::vector<int> checked_layers(const Model& model, std::vector<int> layers) {
  const int count = model.arch().num_layers();
  std::sort(layers.begin(), layers.end());
  layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
  for (int layer : layers)
    if (layer < 0 || layer >= count)
      throw InputError("--layers: layer " + std::to_string(layer) + " out of range (the model has " +
                       std::to_string(count) + ")");
  return layers;
}

}  // namespace graft::edits
