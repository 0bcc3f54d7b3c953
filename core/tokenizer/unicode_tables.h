// Raw Unicode data tables, generated into unicode_tables.cpp by gen_unicode_tables.py.
// Use the lookups in unicode.h rather than these arrays.
#pragma once

#include <cstddef>
#include <cstdint>

namespace graft::tokenizer_detail {

struct CategoryRange {
  uint32_t first;
  uint32_t last;
  uint8_t flags;
};

struct CccRange {
  uint32_t first;
  uint32_t last;
  uint8_t ccc;
};

struct Decomposition {
  uint32_t code_point;
  uint32_t first;
  uint32_t second;   // 0 for a singleton decomposition
  uint8_t composes;  // 1 if canonical composition of (first, second) gives code_point back
};

extern const CategoryRange kCategoryRanges[];
extern const std::size_t kCategoryRangeCount;
extern const CccRange kCccRanges[];
extern const std::size_t kCccRangeCount;
extern const Decomposition kDecompositions[];
extern const std::size_t kDecompositionCount;

}  // namespace graft::tokenizer_detail
