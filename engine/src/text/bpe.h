// SPDX-License-Identifier: Apache-2.0
// Byte-level BPE by rank (spec §2.3): a byte-string → rank table over one contiguous byte arena, and the merge
// loop (whole-piece shortcut, then repeatedly merge the adjacent pair whose concatenation has the lowest rank,
// ties → leftmost). Two equivalent merge strategies: a linear scan for short pieces (tiktoken's) and a heap with
// lazy invalidation for long ones (O(n log n) on e.g. a 100 kB run of spaces).
// ref: tiktoken src/lib.rs _byte_pair_merge / byte_pair_encode.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pixtral::text {

/// Open-addressing hash table from byte strings (stored in an arena) to their rank.
class RankTable {
 public:
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;

  /// Append one entry; its rank is the number of entries before it. Returns the rank of an earlier entry with
  /// the same bytes (the new one is then not added), kNone otherwise.
  std::uint32_t add(std::string_view bytes);
  /// Rank of `bytes`, kNone when absent.
  std::uint32_t find(std::string_view bytes) const;
  /// Bytes of a rank (rank < size()).
  std::string_view bytes(std::uint32_t rank) const {
    return std::string_view(arena_).substr(offsets_[rank], offsets_[rank + 1] - offsets_[rank]);
  }
  std::size_t size() const { return offsets_.size() - 1; }

 private:
  void grow();
  static std::uint64_t hash(std::string_view s);

  std::string arena_;
  std::vector<std::uint32_t> offsets_{0};  // entry r = arena_[offsets_[r], offsets_[r+1])
  std::vector<std::uint32_t> slots_;       // rank or kNone; size a power of two
  std::size_t max_len_ = 0;
};

enum class MergeAlgo { automatic, linear, heap };

/// Append the ranks of one pre-tokenised piece (non-empty) to `out`. Every single byte must be in `table`.
void bpe_encode_piece(std::string_view piece, const RankTable& table, std::vector<std::uint32_t>& out,
                      MergeAlgo algo = MergeAlgo::automatic);

}  // namespace pixtral::text
