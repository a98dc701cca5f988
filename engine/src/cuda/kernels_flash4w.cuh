// SPDX-License-Identifier: Apache-2.0
// Flash attention v4, warp-specialized configurations (PIXTRAL_CUDA_FLASH=4w / 4p / 4b / 4c): textually part of
// kernels_flash4.cu (included inside its anonymous namespace, after v4's helpers; compiled only there, where the
// sm_90a image exists). Same semantics as v4 (per-row key ranges or the device decode state, zero-filled keys past
// the block's range, lazy rescaling, fully masked rows give 0, deterministic: fixed order, no atomics).
//   - one block a SM: 2 consumer warpgroups × 64 query rows + 1 producer warpgroup (384 threads, 168 registers a
//     thread, no setmaxnreg; ptxas gave a 288-thread block the same 168);
//   - the producer warpgroup copies the K/V tiles with cp.async into a ring of kStages stages; tile t is announced
//     on the stage's "full" mbarrier (128 arrivals: each producer thread after its own cp.async group completed and a
//     fence.proxy.async, so the writes are visible to wgmma's async proxy — v4's writer-side pattern); consumer
//     warps give the stage back on its "empty" mbarrier (8 arrivals: lane 0 of each consumer warp). The producer
//     keeps kStages − 2 tiles' copies in flight beyond the one it announces (a consumer holds tile t's V until it
//     has tile t + 1's S in flight, so a deeper lag could deadlock);
//   - intra-warpgroup overlap (FlashAttention-3 §3.2): S_t = Q·K_tᵀ and O += P_{t−1}·V_{t−1} are issued together;
//     the softmax of S_t (after wgmma.wait_group 1) runs while P_{t−1}·V_{t−1} is on the tensor cores; O is
//     rescaled once that group is done (wait_group 0);
//   - kPingPong (4p, 4b): the two consumer warpgroups take turns issuing their wgmmas (named barriers 3 and 4),
//     so one's softmax overlaps the other's products (FlashAttention-3 §3.1). Both warpgroups take exactly
//     n_tiles + 1 turns (a skipped tile's turn issues nothing), so the turns pair up whatever their key ranges;
//   - kBcW keys a tile: 64 (4w, 4p) or 128 (4b, 4c, head_dim 64 only: half the mbarrier waits and turns a key;
//     at head_dim 128 they run as 4p / 4w, since S, P and O alone would be 160 of the 168 registers: spills).
// A consumer warpgroup processes the contiguous run of tiles [t_lo, t_hi) its rows can see; for the others it
// waits on "full" and gives the stage back at once (the wait keeps its arrivals in the right phase of "empty").
// ref: FlashAttention-3 (Shah et al. 2024) §3.1-3.2; flash-attention hopper/mainloop_fwd_sm90_tma_gmma_ws.hpp
// (IntraWGOverlap, warp_scheduler_barrier_sync / _arrive); PTX ISA "mbarrier" (init, arrive, try_wait.parity),
// "bar.sync / bar.arrive" (named barriers), wgmma.wait_group.

constexpr int kWConsumers = 256;  // 2 consumer warpgroups
constexpr int kWProducers = 128;  // 1 producer warpgroup
constexpr int kWThreads = kWConsumers + kWProducers;
constexpr int kBarQ = 1;     // named barriers 1, 2: a consumer warpgroup's Q rows landed
constexpr int kBarTurn = 3;  // named barriers 3, 4: warpgroup 0's / 1's turn to issue wgmmas

template <int D, int kBcW, int kStages>
constexpr std::size_t smem_bytes_w() {
  // 1024 bytes of alignment slack, [Q: kBr × D][stage 0: K, V (kBcW × D)] .. [stage kStages − 1], full[kStages],
  // empty[kStages] (mbarriers, 8 bytes), the rows' key ranges, 4 warps' range summaries
  return 1024 + std::size_t(kBr) * D * 2 + std::size_t(kStages) * 2 * kBcW * D * 2 + 2 * kStages * 8 +
         kBr * sizeof(int2) + 4 * sizeof(int4);
}

// Rows [row0, row0 + kRows) of a [*, stride] bf16 matrix (D columns from `base`) into rows [tile_r0, + kRows) of a
// kTileRows-row sw128 tile, by kN threads (tid in [0, kN)); rows at or past row_end are zero-filled.
template <int D, int kTileRows, int kRows, int kN>
__device__ __forceinline__ void load_rows_sw128(std::uint32_t tile, const bf16* base, std::int64_t stride, int row0,
                                                int row_end, int tile_r0, int tid) {
  constexpr int kChunks = D / 8;
#pragma unroll 8
  for (int i = tid; i < kRows * kChunks; i += kN) {
    const int r = i / kChunks, c = i % kChunks;
    const int row = row0 + r;
    const bool valid = row < row_end;
    const bf16* src = valid ? base + std::int64_t(row) * stride + c * 8 : base;
    cp_async16(tile + sw128<kTileRows>(tile_r0 + r, c), src, valid);
  }
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void mbar_init(std::uint32_t a, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(a), "r"(count) : "memory");
}
// Release (cta scope) arrival.
__device__ __forceinline__ void mbar_arrive(std::uint32_t a) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(a) : "memory");
}
// Acquire (cta scope): returns once the phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(std::uint32_t a, std::uint32_t parity) {
  std::uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
}
__device__ __forceinline__ void named_sync(int id, int n) { asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory"); }
__device__ __forceinline__ void named_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void wg_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

#define PX_F4(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define PX_F32(d, o)                                                                                       \
  PX_F4(d, o + 0), PX_F4(d, o + 4), PX_F4(d, o + 8), PX_F4(d, o + 12), PX_F4(d, o + 16), PX_F4(d, o + 20), \
      PX_F4(d, o + 24), PX_F4(d, o + 28)
#define PX_R32_0                                                                  \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define PX_R32_32                                                                          \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
// s[64 × 128] (= or +=) Q[64 × 16] · K[128 keys × 16]ᵀ, both K-major in shared memory.
__device__ __forceinline__ void wgmma_qk(float (&s)[64], std::uint64_t da, std::uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" PX_R32_0 ", " PX_R32_32
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : PX_F32(s, 0), PX_F32(s, 32)
      : "l"(da), "l"(db), "r"(accumulate));
}
#undef PX_F4
#undef PX_F32
#undef PX_R32_0
#undef PX_R32_32
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <int D, class TO, int kBcW, int kStages, bool kPingPong>
__global__ void __launch_bounds__(kWThreads, 1) flash4w_fwd_kernel(const FlashParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(kStages >= 2, "the ring needs two stages");
  constexpr int kLag = kStages - 2;  // producer: tiles in flight beyond the one it announces
  constexpr int kKSteps = D / 16;    // k-steps of Q·Kᵀ
  constexpr int kO = D / 2;          // O accumulators a thread
  constexpr int kS = kBcW / 2;       // S accumulators a thread (64 rows × kBcW over 128 threads)
  constexpr std::uint32_t kQBytes = kBr * D * 2, kTileBytes = kBcW * D * 2;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const std::uint32_t s_raw = std::uint32_t(__cvta_generic_to_shared(smem_raw));
  const std::uint32_t s_base = (s_raw + 1023u) & ~1023u;  // swizzle atoms 1024-byte aligned
  unsigned char* smem = smem_raw + (s_base - s_raw);
  const std::uint32_t s_q = s_base;
  auto s_k = [&](int st) { return s_base + kQBytes + kTileBytes * (2 * st); };
  auto s_v = [&](int st) { return s_base + kQBytes + kTileBytes * (2 * st + 1); };
  const std::uint32_t s_bar = s_base + kQBytes + kTileBytes * 2 * kStages;
  auto full = [&](int st) { return s_bar + 8 * st; };
  auto empty = [&](int st) { return s_bar + 8 * (kStages + st); };
  int2* s_rng = reinterpret_cast<int2*>(smem + kQBytes + kTileBytes * 2 * kStages + 16 * kStages);
  int4* s_wrng = reinterpret_cast<int4*>(s_rng + kBr);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h = blockIdx.x;
  const int qb = p.n_qblocks - 1 - int(blockIdx.y);  // heaviest (causal) query blocks first, all heads
  const int kvh = h / (p.H / p.Hkv);
  const int r0 = qb * kBr;
  const int nr = min(kBr, p.n_q - r0);
  const std::int64_t q_stride = std::int64_t(p.H) * D, kv_stride = std::int64_t(p.Hkv) * D;

  // Key ranges (v4): thread tid < 128 owns block row tid; per warp the union and the intersection.
  if (tid < kBr) {
    const bool valid = tid < nr;
    const int2 rr = valid ? row_range(p, r0 + tid) : make_int2(INT_MAX, INT_MIN);
    s_rng[tid] = rr;
    int lo = valid ? rr.x : INT_MAX, hi = valid ? rr.y : INT_MIN;
    int maxlo = valid ? rr.x : INT_MIN, minhi = valid ? rr.y : INT_MAX;
#pragma unroll
    for (int o_ = 16; o_ > 0; o_ >>= 1) {
      lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o_));
      hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o_));
      maxlo = max(maxlo, __shfl_xor_sync(0xffffffffu, maxlo, o_));
      minhi = min(minhi, __shfl_xor_sync(0xffffffffu, minhi, o_));
    }
    if (lane == 0) s_wrng[warp] = make_int4(lo, hi, maxlo, minhi);
  }
  if (tid == 0) {
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      mbar_init(full(st), kWProducers);
      mbar_init(empty(st), kWConsumers / 32);
    }
  }
  __syncthreads();  // the only block-wide barrier: after it, producer and consumers go their own ways
  int blk_lo = INT_MAX, blk_hi = INT_MIN;
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const int4 wr = s_wrng[w];
    blk_lo = min(blk_lo, wr.x);
    blk_hi = max(blk_hi, wr.y);
  }
  const int n_tiles = blk_hi > blk_lo ? (blk_hi - blk_lo + kBcW - 1) / kBcW : 0;

  if (warp >= kWConsumers / 32) {  // ---- producer warpgroup ----
    const int ptid = tid - kWConsumers;
    const bf16* kg = p.k + std::int64_t(kvh) * D;
    const bf16* vg = p.v + std::int64_t(kvh) * D;
    for (int t = 0; t < n_tiles; ++t) {
      const int st = t % kStages;
      if (t >= kStages) mbar_wait(empty(st), std::uint32_t((t / kStages - 1) & 1));  // tile t − kStages released
      const int kt = blk_lo + t * kBcW;
      load_rows_sw128<D, kBcW, kBcW, kWProducers>(s_k(st), kg, kv_stride, kt, blk_hi, 0, ptid);
      load_rows_sw128<D, kBcW, kBcW, kWProducers>(s_v(st), vg, kv_stride, kt, blk_hi, 0, ptid);
      cp_async_commit();
      if (t >= kLag) {  // tile t − kLag landed: make it visible to the async proxy, announce it
        cp_async_wait<kLag>();
        fence_proxy_async();
        mbar_arrive(full((t - kLag) % kStages));
      }
    }
    cp_async_wait<0>();
    fence_proxy_async();
    for (int t = max(0, n_tiles - kLag); t < n_tiles; ++t) mbar_arrive(full(t % kStages));
    return;
  }

  // ---- consumer warpgroups ----
  const int wg = warp >> 2, wq = warp & 3;
  const int g = lane >> 2, t4 = lane & 3;
  const int wtid = tid & 127;
  const float sc = p.scale_log2;
  {  // this warpgroup's 64 Q rows
    const bf16* qg = p.q + std::int64_t(r0) * q_stride + std::int64_t(h) * D;
    load_rows_sw128<D, kBr, 64, 128>(s_q, qg, q_stride, 64 * wg, nr, 64 * wg, wtid);
    cp_async_commit();
    cp_async_wait<0>();
    fence_proxy_async();
    named_sync(kBarQ + wg, 128);
  }
  // This warpgroup's rows: union (x, y), intersection (z, w); the run of tiles [t_lo, t_hi) that meets the union.
  int4 grng;
  {
    const int4 a = s_wrng[2 * wg], b = s_wrng[2 * wg + 1];
    grng = make_int4(min(a.x, b.x), max(a.y, b.y), max(a.z, b.z), min(a.w, b.w));
  }
  int t_lo = 0, t_hi = 0;
  if (grng.y > grng.x && n_tiles > 0) {  // grng.x ≥ blk_lo, grng.y ≤ blk_hi
    t_lo = (grng.x - blk_lo) / kBcW;
    t_hi = min(n_tiles, (grng.y - blk_lo + kBcW - 1) / kBcW);
  }

  const int row_a = 64 * wg + 16 * wq + g;  // rows row_a (accumulators 4j, 4j + 1) and row_a + 8 (4j + 2, 4j + 3)
  const std::uint32_t q_wg = s_q + 64 * 128 * wg;
  float o[kO];
#pragma unroll
  for (int i = 0; i < kO; ++i) o[i] = 0.f;
  float s[kS];
#pragma unroll
  for (int i = 0; i < kS; ++i) s[i] = 0.f;
  std::uint32_t pa[kBcW / 16][4];
#pragma unroll
  for (int kk = 0; kk < kBcW / 16; ++kk) pa[kk][0] = pa[kk][1] = pa[kk][2] = pa[kk][3] = 0u;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  // Turns (ping-pong): every warpgroup takes exactly n_tiles + 1, one a key tile plus the final P·V's.
  int turn = 0;
  auto turn_begin = [&] {
    if constexpr (kPingPong) named_sync(kBarTurn + wg, 256);
  };
  auto turn_end = [&] {
    if constexpr (kPingPong) {
      if (!(wg == 1 && turn == n_tiles)) named_arrive(kBarTurn + (wg ^ 1), 256);  // the other's turn
    }
    ++turn;
  };
  // A tile none of this warpgroup's rows can see: wait for it (keeps the "empty" arrivals in phase), give it back.
  auto skip_tile = [&](int t) {
    mbar_wait(full(t % kStages), std::uint32_t((t / kStages) & 1));
    turn_begin();
    turn_end();
    __syncwarp();
    if (lane == 0) mbar_arrive(empty(t % kStages));
  };
  auto fence_all = [&] {
#pragma unroll
    for (int i = 0; i < kS; ++i) reg_fence(s[i]);
#pragma unroll
    for (int i = 0; i < kO; ++i) reg_fence(o[i]);
#pragma unroll
    for (int kk = 0; kk < kBcW / 16; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) reg_fence(pa[kk][i]);
  };
  auto issue_s = [&](int st) {  // S = Q K_tᵀ (raw)
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const std::uint32_t panel_off = std::uint32_t(kk >> 2), k_off = std::uint32_t(kk & 3) * 32;
      const std::uint64_t da = desc_sw128(q_wg + panel_off * (kBr * 128) + k_off, 16, 1024);
      const std::uint64_t db = desc_sw128(s_k(st) + panel_off * (kBcW * 128) + k_off, 16, 1024);
      wgmma_qk(s, da, db, kk > 0);
    }
    wg_commit();
  };
  auto issue_pv = [&](int st) {  // O += P V: kBcW / 16 k-steps, V descriptor 16 rows (2048 bytes) further each
#pragma unroll
    for (int kk = 0; kk < kBcW / 16; ++kk)
      wgmma_pv(o, pa[kk], desc_sw128(s_v(st) + kk * 16 * 128, kBcW * 128, 1024));
    wg_commit();
  };
  // After P·V is done: O and pa are ours again; the stage goes back to the producer.
  auto pv_done = [&](int st) {
    wg_wait0();
#pragma unroll
    for (int i = 0; i < kO; ++i) reg_fence(o[i]);
#pragma unroll
    for (int kk = 0; kk < kBcW / 16; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) reg_fence(pa[kk][i]);
    __syncwarp();
    if (lane == 0) mbar_arrive(empty(st));
  };
  // Softmax of S_t (S complete, reg-fenced): mask, running max, α, P = 2^(s·scale − m) in s, row sums.
  float al[2];
  bool moved;
  auto softmax = [&](int t) {
#pragma unroll
    for (int i = 0; i < kS; ++i) reg_fence(s[i]);
    const int kt = blk_lo + t * kBcW;
    const bool need_mask = kt < grng.z || kt + kBcW > grng.w;
    float mx[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // row i of this thread: row_a + 8 i, accumulators 4j + 2i, 4j + 2i + 1
      mx[i] = -INFINITY;
      if (need_mask) {
        const int2 rr = s_rng[row_a + 8 * i];
#pragma unroll
        for (int j = 0; j < kBcW / 8; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = kt + j * 8 + 2 * t4 + c;
            if (key < rr.x || key >= rr.y) s[4 * j + 2 * i + c] = -INFINITY;
          }
      }
#pragma unroll
      for (int j = 0; j < kBcW / 8; ++j) mx[i] = fmaxf(mx[i], fmaxf(s[4 * j + 2 * i], s[4 * j + 2 * i + 1]));
    }
    float nm[2];
    moved = false;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int o_ = 1; o_ <= 2; o_ <<= 1) mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], o_));
      const float ms = mx[i] * sc;  // -inf stays -inf
      const float mn = ms > m[i] + kSlack ? ms : m[i];
      const bool up = mn != m[i];
      al[i] = up ? ex2(m[i] - mn) : 1.f;  // ex2(-inf) = 0 on the first tile a row sees
      moved |= up;
      m[i] = mn;
      nm[i] = mn == -INFINITY ? 0.f : -mn;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int j = 0; j < kBcW / 8; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) s[4 * j + c] = ex2(fmaf(s[4 * j + c], sc, nm[c >> 1]));
      sum[0] += s[4 * j] + s[4 * j + 1];
      sum[1] += s[4 * j + 2] + s[4 * j + 3];
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * al[i] + sum[i];
  };
  // O *= α (O not in flight), then P rounded to bf16 as the A fragment of P·V (v4's layout).
  auto rescale_pack = [&] {
    if (__any_sync(0xffffffffu, moved)) {  // warp-uniform; α = 1 elsewhere, so skipping it is exact
#pragma unroll
      for (int j = 0; j < kO / 4; ++j) {
        o[4 * j] *= al[0];
        o[4 * j + 1] *= al[0];
        o[4 * j + 2] *= al[1];
        o[4 * j + 3] *= al[1];
      }
    }
#pragma unroll
    for (int j = 0; j < kBcW / 8; ++j) {
      pa[j >> 1][2 * (j & 1)] = pack_bf16(s[4 * j], s[4 * j + 1]);
      pa[j >> 1][2 * (j & 1) + 1] = pack_bf16(s[4 * j + 2], s[4 * j + 3]);
    }
  };

  if (kPingPong && wg == 1) named_arrive(kBarTurn + 0, 256);  // warpgroup 0 takes the first turn
  for (int t = 0; t < t_lo; ++t) skip_tile(t);
  if (t_hi > t_lo) {
    // First tile: S only.
    mbar_wait(full(t_lo % kStages), std::uint32_t((t_lo / kStages) & 1));
    turn_begin();
    fence_all();
    wg_fence();
    issue_s(t_lo % kStages);
    turn_end();
    wg_wait0();
    softmax(t_lo);
    rescale_pack();
    // Steady state: S_t and P_{t−1}·V_{t−1} together; S_t's softmax while P_{t−1}·V_{t−1} runs.
    for (int t = t_lo + 1; t < t_hi; ++t) {
      const int st = t % kStages, st_prev = (t - 1) % kStages;
      mbar_wait(full(st), std::uint32_t((t / kStages) & 1));
      turn_begin();
      fence_all();
      wg_fence();
      issue_s(st);
      issue_pv(st_prev);
      turn_end();
      wg_wait1();  // S_t done
      softmax(t);
      pv_done(st_prev);
      rescale_pack();
    }
    // Last P·V.
    turn_begin();
    fence_all();
    wg_fence();
    issue_pv((t_hi - 1) % kStages);
    turn_end();
    pv_done((t_hi - 1) % kStages);
  } else {
    turn_begin();  // the final turn, empty
    turn_end();
  }
  for (int t = t_hi; t < n_tiles; ++t) skip_tile(t);
  (void)turn;

  TO* out = static_cast<TO*>(p.out) + std::int64_t(r0) * q_stride + std::int64_t(h) * D;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int o_ = 1; o_ <= 2; o_ <<= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], o_);
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    const int row = row_a + 8 * i;
    if (row < nr) {
      TO* dst = out + std::int64_t(row) * q_stride + 2 * t4;
#pragma unroll
      for (int j = 0; j < kO / 4; ++j) store2(dst + j * 8, o[4 * j + 2 * i] * inv, o[4 * j + 2 * i + 1] * inv);
    }
  }
#else
  __shared__ int not_sm90a[1];  // never launched (flash4_supported needs the sm_90a image)
  asm volatile("st.shared.u32 [%0], 0;\n" ::"r"(std::uint32_t(__cvta_generic_to_shared(not_sm90a))));
#endif
}

template <int D, class TO, int kBcW, int kStages, bool kPingPong>
Status launch_typed_w(const AttentionLaunch& a, cudaStream_t s) {
  const FlashParams p = make_params(a, kBr);
  constexpr std::size_t smem = smem_bytes_w<D, kBcW, kStages>();
  auto kernel = flash4w_fwd_kernel<D, TO, kBcW, kStages, kPingPong>;
  static bool smem_set = false;  // per instantiation; cudaFuncSetAttribute is not a stream operation
  if (!smem_set) {
    PIXTRAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    smem_set = true;
  }
  const dim3 grid(unsigned(a.n_heads), unsigned(p.n_qblocks));
  kernel<<<grid, kWThreads, smem, s>>>(p);
  PIXTRAL_CUDA_LAUNCH_CHECK(flash4w_fwd_kernel);
  return {};
}

// The warp-specialized configurations: 'w' 64-key tiles, 'p' same with ping-pong, 'b' 128-key tiles with
// ping-pong, 'c' 128-key tiles without. Stages: as many as fit the head_dim's 64-key / 128-key tiles comfortably.
// 'b' / 'c' at head_dim 128 run as 'p' / 'w' (128-key tiles would spill at 168 registers: S, P and O alone are 160).
template <int D>
constexpr int w_stages(char config) {
  return (config == 'b' || config == 'c') ? 3 : (D == 128 ? 3 : 4);
}
inline bool is_w_config(char config) { return config == 'w' || config == 'p' || config == 'b' || config == 'c'; }
template <int D>
std::size_t smem_w(char config) {
  return (D == 64 && (config == 'b' || config == 'c')) ? smem_bytes_w<D, 128, w_stages<D>('b')>()
                                          : smem_bytes_w<D, 64, w_stages<D>('w')>();
}
template <int D, class TO>
Status launch_w(const AttentionLaunch& a, char config, cudaStream_t s) {
  if constexpr (D == 64) {  // 128-key tiles only here (not even instantiated at head_dim 128)
    if (config == 'b') return launch_typed_w<D, TO, 128, w_stages<D>('b'), true>(a, s);
    if (config == 'c') return launch_typed_w<D, TO, 128, w_stages<D>('c'), false>(a, s);
  }
  if (config == 'p' || config == 'b') return launch_typed_w<D, TO, 64, w_stages<D>('p'), true>(a, s);
  return launch_typed_w<D, TO, 64, w_stages<D>('w'), false>(a, s);
}
