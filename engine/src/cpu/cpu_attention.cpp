// SPDX-License-Identifier: Apache-2.0
// attention: out = softmax(q kᵀ · scale + mask) v per head, GQA, causal (with q_offset) or block-diagonal segments.
// Work items are (head, block of kQBlock queries), fixed by the shapes. Scores S = q kᵀ · scale of the block
// against the union of its queries' key ranges; the softmax is fp32 with max subtraction over each query's own
// keys (exp in fp32, the normaliser summed in double; masked keys get p = 0); then out = P v / Σp. The two
// products run through OpenBLAS sgemm (single-threaded per item) or, without BLAS, an in-house kernel (scores 4
// queries at a time with the canonical dot order of cpu_simd.h; p_j · v_j accumulated in fp32 in key order).
// Deterministic for any thread count.
// ref: mistral_inference/transformer_layers.py Attention (xformers memory_efficient_attention); the block-diagonal
// mask of spec §6.4 (vLLM BlockDiagonalMask).
#include <algorithm>
#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_simd.h"

#if defined(PIXTRAL_HAVE_BLAS)
#include <cblas.h>
#endif

namespace pixtral::cpu {

namespace {

constexpr std::int64_t kQBlock = 16;

// Keys visible to query i (absolute row in q): [begin, end).
struct KeyRange {
  std::int64_t begin, end;
};

struct AttnPlan {
  const AttentionArgs* a;
  std::int64_t q_stride, kv_stride, group, n_qblocks;
  const std::int64_t* seg_of_row;  // [Tq] segment start of each row, or null
  const std::int64_t* seg_end;     // [Tq] segment end of each row, or null
};

PIXTRAL_INLINE KeyRange key_range(const AttnPlan& p, std::int64_t i) {
  const AttentionArgs& a = *p.a;
  if (p.seg_of_row) return {p.seg_of_row[i], p.seg_end[i]};
  if (a.causal) return {0, std::min<std::int64_t>(a.Tk, a.q_offset + i + 1)};
  return {0, a.Tk};
}

// One work item: head h, queries [i0, i1). scores: [kQBlock, Tk] scratch; acc: [kQBlock, D] scratch.
PIXTRAL_INLINE void attend_block(const AttnPlan& p, int h, std::int64_t i0, std::int64_t i1, float* scores,
                                 float* acc) {
  const AttentionArgs& a = *p.a;
  const std::int64_t D = a.head_dim, D8 = D & ~std::int64_t(7), Tk = a.Tk;
  const std::int64_t kvh = h / p.group;
  const float* kbase = a.k + kvh * D;  // key j at kbase + j * kv_stride
  const float* vbase = a.v + kvh * D;
  // 1. scores, 4 queries at a time against each key.
  for (std::int64_t i = i0; i < i1; i += 4) {
    const int nq = int(std::min<std::int64_t>(4, i1 - i));
    const float* qr[4];
    KeyRange kr[4];
    std::int64_t jb = Tk, je = 0;
    for (int r = 0; r < 4; ++r) {
      const std::int64_t ii = std::min(i + r, i1 - 1);
      qr[r] = a.q + ii * p.q_stride + std::int64_t(h) * D;
      kr[r] = key_range(p, ii);
      jb = std::min(jb, kr[r].begin), je = std::max(je, kr[r].end);
    }
    for (std::int64_t j = jb; j < je; ++j) {
      const float* kj = kbase + j * p.kv_stride;
      v8f c0 = {}, c1 = {}, c2 = {}, c3 = {};
      for (std::int64_t d = 0; d < D8; d += 8) {
        const v8f kv = load8(kj + d);
        c0 += load8(qr[0] + d) * kv;
        c1 += load8(qr[1] + d) * kv;
        c2 += load8(qr[2] + d) * kv;
        c3 += load8(qr[3] + d) * kv;
      }
      const v8f* cs[4] = {&c0, &c1, &c2, &c3};
      for (int r = 0; r < nq; ++r) {
        float s = hsum8(*cs[r]);
        for (std::int64_t d = D8; d < D; ++d) s += qr[r][d] * kj[d];
        scores[(i - i0 + r) * Tk + j] = s * a.scale;
      }
    }
  }
  // 2. softmax per query (fp32 exp, double normaliser), 3. acc = Σ_j p_j v_j in key order.
  for (std::int64_t i = i0; i < i1; ++i) {
    float* s = scores + (i - i0) * Tk;
    float* o = acc + (i - i0) * D;
    const KeyRange kr = key_range(p, i);
    float mx = -INFINITY;
    for (std::int64_t j = kr.begin; j < kr.end; ++j) mx = std::max(mx, s[j]);
    double sum = 0;
    for (std::int64_t j = kr.begin; j < kr.end; ++j) {
      s[j] = std::exp(s[j] - mx);
      sum += s[j];
    }
    std::fill(o, o + D, 0.0f);
    for (std::int64_t j = kr.begin; j < kr.end; ++j) {
      const float* vj = vbase + j * p.kv_stride;
      const v8f pj = splat8(s[j]);
      for (std::int64_t d = 0; d < D8; d += 8) store8(o + d, load8(o + d) + pj * load8(vj + d));
      for (std::int64_t d = D8; d < D; ++d) o[d] += s[j] * vj[d];
    }
    const float inv = sum > 0 ? float(1.0 / sum) : 0.0f;
    float* dst = a.out + i * p.q_stride + std::int64_t(h) * D;
    for (std::int64_t d = 0; d < D; ++d) dst[d] = o[d] * inv;
  }
}

#if defined(PIXTRAL_HAVE_BLAS)
// The same item through sgemm: S[nq, jb:je] = scale · Q Kᵀ, softmax per row, O[nq, D] = P V, then 1/Σp.
void attend_block_blas(const AttnPlan& p, int h, std::int64_t i0, std::int64_t i1, float* scores, float* acc) {
  const AttentionArgs& a = *p.a;
  const std::int64_t D = a.head_dim, Tk = a.Tk, nq = i1 - i0;
  const std::int64_t kvh = h / p.group;
  std::int64_t jb = Tk, je = 0;
  for (std::int64_t i = i0; i < i1; ++i) {
    const KeyRange kr = key_range(p, i);
    jb = std::min(jb, kr.begin), je = std::max(je, kr.end);
  }
  const std::int64_t nk = je - jb;
  const float* q = a.q + i0 * p.q_stride + std::int64_t(h) * D;
  const float* k = a.k + jb * p.kv_stride + kvh * D;
  const float* v = a.v + jb * p.kv_stride + kvh * D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nq), int(nk), int(D), a.scale, q, int(p.q_stride), k,
              int(p.kv_stride), 0.0f, scores, int(nk));
  double sums[kQBlock];
  for (std::int64_t r = 0; r < nq; ++r) {
    float* s = scores + r * nk;
    const KeyRange kr = key_range(p, i0 + r);
    float mx = -INFINITY;
    for (std::int64_t j = kr.begin; j < kr.end; ++j) mx = std::max(mx, s[j - jb]);
    double sum = 0;
    for (std::int64_t j = jb; j < je; ++j) {
      const bool in = j >= kr.begin && j < kr.end;
      s[j - jb] = in ? std::exp(s[j - jb] - mx) : 0.0f;
      sum += s[j - jb];
    }
    sums[r] = sum;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nq), int(D), int(nk), 1.0f, scores, int(nk), v,
              int(p.kv_stride), 0.0f, acc, int(D));
  for (std::int64_t r = 0; r < nq; ++r) {
    const float inv = sums[r] > 0 ? float(1.0 / sums[r]) : 0.0f;
    float* dst = a.out + (i0 + r) * p.q_stride + std::int64_t(h) * D;
    for (std::int64_t d = 0; d < D; ++d) dst[d] = acc[r * D + d] * inv;
  }
}
#endif

PIXTRAL_INLINE void attend_items(const AttnPlan& p, std::int64_t it0, std::int64_t it1, float* scratch) {
  const AttentionArgs& a = *p.a;
  float* scores = scratch;
  float* acc = scratch + kQBlock * a.Tk;
  for (std::int64_t it = it0; it < it1; ++it) {
    const int h = int(it / p.n_qblocks);
    const std::int64_t i0 = (it % p.n_qblocks) * kQBlock, i1 = std::min(a.Tq, i0 + kQBlock);
    attend_block(p, h, i0, i1, scores, acc);
  }
}
void attend_generic(const AttnPlan& p, std::int64_t it0, std::int64_t it1, float* scratch) {
  attend_items(p, it0, it1, scratch);
}
#if PIXTRAL_X86_DISPATCH
PIXTRAL_TARGET_AVX2 void attend_avx2(const AttnPlan& p, std::int64_t it0, std::int64_t it1, float* scratch) {
  attend_items(p, it0, it1, scratch);
}
#endif

}  // namespace

Status attention(ThreadPool& pool, Workspace& ws, const AttentionArgs& a) {
  if (a.Tq == 0) return Status::success();
  AttnPlan p{&a, std::int64_t(a.n_heads) * a.head_dim, std::int64_t(a.n_kv_heads) * a.head_dim,
             a.n_heads / a.n_kv_heads, (a.Tq + kQBlock - 1) / kQBlock, nullptr, nullptr};
  std::vector<std::int64_t> seg;  // [2, Tq]: start and end of each row's segment
  if (!a.segments.empty()) {
    try {
      seg.resize(std::size_t(2 * a.Tq));
    } catch (const std::bad_alloc&) {
      return Status(ErrorCode::out_of_memory, "cpu: attention segments");
    }
    std::int64_t start = 0;
    for (int len : a.segments) {
      for (std::int64_t i = start; i < start + len; ++i) seg[std::size_t(i)] = start, seg[std::size_t(a.Tq + i)] = start + len;
      start += len;
    }
    p.seg_of_row = seg.data();
    p.seg_end = seg.data() + a.Tq;
  }
  PIXTRAL_RETURN_IF_ERROR(
      ws.reserve(pool.size(), std::size_t(kQBlock * (a.Tk + a.head_dim)), "attention scores"));
  const std::int64_t n_items = std::int64_t(a.n_heads) * p.n_qblocks;
  const std::int64_t work = kQBlock * std::max<std::int64_t>(1, a.Tk) * a.head_dim;
  const std::int64_t grain = std::max<std::int64_t>(1, 32768 / work);
  const bool avx2 = have_avx2(), use_blas = blas_enabled();
  pool.parallel_for(n_items, grain, [&](std::int64_t it0, std::int64_t it1, int worker) {
    float* scratch = ws.per_worker[std::size_t(worker)].data();
#if defined(PIXTRAL_HAVE_BLAS)
    if (use_blas) {
      for (std::int64_t it = it0; it < it1; ++it) {
        const int h = int(it / p.n_qblocks);
        const std::int64_t i0 = (it % p.n_qblocks) * kQBlock, i1 = std::min(a.Tq, i0 + kQBlock);
        attend_block_blas(p, h, i0, i1, scratch, scratch + kQBlock * a.Tk);
      }
      return;
    }
#endif
    (void)use_blas;
#if PIXTRAL_X86_DISPATCH
    if (avx2) return attend_avx2(p, it0, it1, scratch);
#endif
    (void)avx2;
    attend_generic(p, it0, it1, scratch);
  });
  return Status::success();
}

}  // namespace pixtral::cpu
