// SPDX-License-Identifier: Apache-2.0
// Rank table and BPE merge loop (see bpe.h). Both merge strategies pick, at every step, the adjacent pair with
// the lowest (rank, start offset) — the same sequence of merges, hence the same output.
// ref: tiktoken src/lib.rs _byte_pair_merge.
#include "text/bpe.h"

#include <cstring>
#include <queue>

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

// Doubly linked parts + a min-heap of candidate pairs keyed (rank, start); stale entries carry an old version.
void merge_heap(std::string_view piece, const RankTable& t, std::vector<std::uint32_t>& out) {
  const std::size_t n = piece.size();
  struct Node {
    std::size_t start, end;
    std::int64_t prev, next;
    std::uint32_t version;
    bool alive;
  };
  std::vector<Node> nodes(n);
  for (std::size_t i = 0; i < n; ++i) {
    nodes[i] = {i, i + 1, std::int64_t(i) - 1, i + 1 < n ? std::int64_t(i + 1) : -1, 0, true};
  }
  struct Cand {
    std::uint32_t rank;
    std::size_t start;
    std::size_t node;
    std::uint32_t version;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push_pair = [&](std::size_t i) {
    const Node& a = nodes[i];
    if (a.next < 0) return;
    const Node& b = nodes[std::size_t(a.next)];
    const std::uint32_t r = t.find(piece.substr(a.start, b.end - a.start));
    if (r != kInf) heap.push({r, a.start, i, a.version});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Node& a = nodes[c.node];
    if (!a.alive || a.version != c.version || a.next < 0) continue;
    Node& b = nodes[std::size_t(a.next)];
    a.end = b.end;
    a.next = b.next;
    b.alive = false;
    if (a.next >= 0) nodes[std::size_t(a.next)].prev = std::int64_t(c.node);
    ++a.version;
    push_pair(c.node);
    if (a.prev >= 0) {
      ++nodes[std::size_t(a.prev)].version;
      push_pair(std::size_t(a.prev));
    }
  }
  for (std::int64_t i = 0; i >= 0; i = nodes[std::size_t(i)].next) {
    const Node& a = nodes[std::size_t(i)];
    out.push_back(t.find(piece.substr(a.start, a.end - a.start)));
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
  if (algo == MergeAlgo::automatic) algo = piece.size() <= 256 ? MergeAlgo::linear : MergeAlgo::heap;
  if (algo == MergeAlgo::linear) {
    merge_linear(piece, table, out);
  } else {
    merge_heap(piece, table, out);
  }
}

}  // namespace pixtral::text
