// SPDX-License-Identifier: Apache-2.0
// Rank table and BPE merge loop (see bpe.h). Both merge strategies pick, at every step, the adjacent pair with
// the lowest (rank, start offset) — the same sequence of merges, hence the same output.
// ref: tiktoken src/lib.rs _byte_pair_merge.
#include "text/bpe.h"

#include <cstring>
#include <algorithm>
#include <functional>

namespace pixtral::text {

std::uint64_t RankTable::hash(std::string_view s) {
  // FNV-1a, then a final avalanche (splitmix64) so the low bits used for the slot index are well mixed.
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  return h ^ (h >> 31);
}

void RankTable::grow() {
  std::size_t cap = slots_.empty() ? 1024 : slots_.size() * 2;
  slots_.assign(cap, kNone);
  for (std::uint32_t r = 0; r < size(); ++r) {
    std::size_t i = hash(bytes(r)) & (cap - 1);
    while (slots_[i] != kNone) i = (i + 1) & (cap - 1);
    slots_[i] = r;
  }
}

std::uint32_t RankTable::find(std::string_view s) const {
  if (s.size() > max_len_ || slots_.empty()) return kNone;
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = hash(s) & mask;; i = (i + 1) & mask) {
    const std::uint32_t r = slots_[i];
    if (r == kNone) return kNone;
    const std::uint32_t a = offsets_[r], b = offsets_[r + 1];
    if (b - a == s.size() && std::memcmp(arena_.data() + a, s.data(), s.size()) == 0) return r;
  }
}

std::uint32_t RankTable::add(std::string_view s) {
  if (const std::uint32_t prev = find(s); prev != kNone) return prev;
  arena_.append(s);
  offsets_.push_back(static_cast<std::uint32_t>(arena_.size()));
  if (s.size() > max_len_) max_len_ = s.size();
  if (size() * 2 > slots_.size()) {
    grow();  // rehashes every entry, including the new one
  } else {
    const std::size_t mask = slots_.size() - 1;
    std::size_t i = hash(s) & mask;
    while (slots_[i] != kNone) i = (i + 1) & mask;
    slots_[i] = static_cast<std::uint32_t>(size() - 1);
  }
  return kNone;
}

namespace {

constexpr std::uint32_t kInf = RankTable::kNone;

// tiktoken's loop: parts[i] = (start, rank of piece[start_i, start_{i+2})); merge the minimum, fix neighbours.
void merge_linear(std::string_view piece, const RankTable& t, std::vector<std::uint32_t>& out) {
  struct Part {
    std::size_t start;
    std::uint32_t rank;
  };
  const std::size_t n = piece.size();
  std::vector<Part> parts;
  parts.reserve(n + 1);
  for (std::size_t i = 0; i + 1 < n; ++i) parts.push_back({i, t.find(piece.substr(i, 2))});
  parts.push_back({n - 1, kInf});
  parts.push_back({n, kInf});
  auto pair_rank = [&](std::size_t i) -> std::uint32_t {  // rank of parts i and i+1 merged
    if (i + 3 >= parts.size()) return kInf;
    return t.find(piece.substr(parts[i].start, parts[i + 3].start - parts[i].start));
  };
  for (;;) {
    std::uint32_t best = kInf;
    std::size_t bi = 0;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      if (parts[i].rank < best) best = parts[i].rank, bi = i;
    }
    if (best == kInf) break;
    parts[bi].rank = pair_rank(bi);  // evaluated before the erase: parts[bi+3] is the part after the merge
    if (bi > 0) parts[bi - 1].rank = pair_rank(bi - 1);
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(bi) + 1);
  }
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    out.push_back(t.find(piece.substr(parts[i].start, parts[i + 1].start - parts[i].start)));
  }
}

// Doubly linked parts (a part is named by its start offset) + a min-heap of candidate pairs packed as
// rank << 32 | start. An entry is current iff its part is alive and still has that pair rank; a stale entry with
// the same rank describes the same bytes, so acting on it is the same merge.
void merge_heap(std::string_view piece, const RankTable& t, std::vector<std::uint32_t>& out) {
  const auto n = static_cast<std::int32_t>(piece.size());
  constexpr std::int32_t kDead = -2;
  struct Node {
    std::int32_t prev, next;  // next = -1 at the end, kDead once merged into its left neighbour
    std::uint32_t pair_rank;  // rank of this part + the next one (kInf: none)
  };
  std::vector<Node> nodes(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i) nodes[std::size_t(i)] = {i - 1, i + 1 < n ? i + 1 : -1, kInf};
  auto end_of = [&](std::int32_t i) {
    const std::int32_t nx = nodes[std::size_t(i)].next;
    return nx >= 0 ? nx : n;
  };
  std::vector<std::uint64_t> heap;
  heap.reserve(std::size_t(n) * 2);
  auto push_pair = [&](std::int32_t i) {
    Node& a = nodes[std::size_t(i)];
    a.pair_rank = kInf;
    if (a.next < 0) return;
    const std::uint32_t r = t.find(piece.substr(std::size_t(i), std::size_t(end_of(a.next) - i)));
    a.pair_rank = r;
    if (r != kInf) {
      heap.push_back((std::uint64_t(r) << 32) | std::uint32_t(i));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) {
    const std::uint32_t r = t.find(piece.substr(std::size_t(i), 2));
    nodes[std::size_t(i)].pair_rank = r;
    if (r != kInf) heap.push_back((std::uint64_t(r) << 32) | std::uint32_t(i));
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const std::uint64_t top = heap.back();
    heap.pop_back();
    const auto i = static_cast<std::int32_t>(top & 0xFFFFFFFFu);
    const auto r = static_cast<std::uint32_t>(top >> 32);
    Node& a = nodes[std::size_t(i)];
    if (a.next == kDead || a.next < 0 || a.pair_rank != r) continue;  // stale
    Node& b = nodes[std::size_t(a.next)];
    const std::int32_t after = b.next;
    b.next = kDead;
    a.next = after;
    if (after >= 0) nodes[std::size_t(after)].prev = i;
    push_pair(i);
    if (a.prev >= 0) push_pair(a.prev);
  }
  for (std::int32_t i = 0; i >= 0; i = nodes[std::size_t(i)].next) {
    out.push_back(t.find(piece.substr(std::size_t(i), std::size_t(end_of(i) - i))));
  }
}

}  // namespace

void bpe_encode_piece(std::string_view piece, const RankTable& table, std::vector<std::uint32_t>& out,
                      MergeAlgo algo) {
  if (piece.empty()) return;
  if (const std::uint32_t r = table.find(piece); r != kInf) {  // whole-piece shortcut (also single bytes)
    out.push_back(r);
    return;
  }
  if (algo == MergeAlgo::automatic) algo = piece.size() <= 256 || piece.size() >= 0x7FFFFFFF ? MergeAlgo::linear : MergeAlgo::heap;
  if (algo == MergeAlgo::linear) {
    merge_linear(piece, table, out);
  } else {
    merge_heap(piece, table, out);
  }
}

}  // namespace pixtral::text
