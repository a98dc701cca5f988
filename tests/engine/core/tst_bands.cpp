// SPDX-License-Identifier: Apache-2.0
// core/bands.h: for_bands covers [0, n) exactly once in contiguous bands on the persistent workers, from one
// caller, from several callers at once (all but one get threads of their own), and from inside a band.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/bands.h"

namespace pixtral {
namespace {

// Counts how often each index of [0, n) was visited and checks the bands are ordered and contiguous.
void expect_covered_once(int n, int threads) {
  std::vector<std::atomic<int>> hits(std::size_t(n > 0 ? n : 1));
  for (auto& h : hits) h = 0;
  std::atomic<int> calls{0}, bad_band{0};
  for_bands(n, threads, [&](int r0, int r1) {
    ++calls;
    if (r0 < 0 || r1 > n || r0 > r1) ++bad_band;
    for (int i = r0; i < r1; ++i) ++hits[std::size_t(i)];
  });
  EXPECT_EQ(bad_band.load(), 0) << "n " << n << " threads " << threads;
  for (int i = 0; i < n; ++i) ASSERT_EQ(hits[std::size_t(i)].load(), 1) << "index " << i << " n " << n << " threads " << threads;
  EXPECT_GE(calls.load(), 1);
  EXPECT_LE(calls.load(), std::max(1, threads));
}

TEST(Bands, EveryIndexOnceForAnyBandCount) {
  for (int n : {0, 1, 2, 7, 8, 9, 100, 1023})
    for (int threads : {1, 2, 3, 7, 8, 12}) expect_covered_once(n, threads);
}

TEST(Bands, ManyJobsInARowOnTheSameWorkers) {
  for (int rep = 0; rep < 300; ++rep) expect_covered_once(1000 + rep, 2 + rep % 7);
}

TEST(Bands, ConcurrentCallersAllComplete) {
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int c = 0; c < 6; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 50; ++rep) {
        const int n = 500 + 37 * c + rep;
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        for (auto& h : hits) h = 0;
        for_bands(n, 8, [&](int r0, int r1) {
          for (int i = r0; i < r1; ++i) ++hits[std::size_t(i)];
        });
        for (auto& h : hits)
          if (h.load() != 1) ++failures;
      }
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Bands, BandCallFromInsideABand) {
  std::atomic<long> sum{0};
  for_bands(8, 8, [&](int r0, int r1) {
    for (int i = r0; i < r1; ++i)
      for_bands(100, 4, [&](int a, int b) {
        for (int j = a; j < b; ++j) sum += j;
      });
  });
  EXPECT_EQ(sum.load(), 8L * (99 * 100 / 2));
}

}  // namespace
}  // namespace pixtral
