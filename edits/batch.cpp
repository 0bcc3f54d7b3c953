#include "edits/batch.h"

#include <algorithm>

#include "core/model.h"

namespace graft::edits {

PaddedBatch pad_right(const Model& model, const std::vector<std::vector<int64_t>>& rows) {
  int64_t longest = 0;
  for (const auto& row : rows) longest = std::max<int64_t>(longest, static_cast<int64_t>(row.size()));
  const int64_t n = static_cast<int64_t>(rows.size());
  PaddedBatch batch{at::full({n, longest}, model.spec().pad_token_id.value_or(0), at::kLong),
                    at::zeros({n, longest}, at::kLong)};
  for (int64_t i = 0; i < n; ++i) {
    const auto& row = rows[static_cast<size_t>(i)];
    const int64_t length = static_cast<int64_t>(row.size());
    batch.ids[i].narrow(0, 0, length).copy_(at::tensor(row, at::kLong));
    batch.mask[i].narrow(0, 0, length).fill_(1);
  }
  return batch;
}

}  // namespace graft::edits
