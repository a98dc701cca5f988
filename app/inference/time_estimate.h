// SPDX-License-Identifier: GPL-3.0-or-later
// How long a question will take on the CPU, said before starting ("about 40 s"). Cost model: the vision encoder
// and the decoder prefill are compute-bound (FLOPs ÷ measured FLOP/s), decoding is bandwidth-bound (weight bytes
// read per token ÷ measured bytes/s). The rates come from a quick probe (probeThroughput, ~0.2 s) and are
// replaced by the rates measured on real generations (calibrate) as soon as there are some.
#pragma once

#include "inference/inference_types.h"

#include <pixtral/model.h>

namespace quire {

struct Throughput {
  double flopsPerSecond = 0;  ///< dense f32 multiply-add rate, all threads (prefill, vision)
  double bytesPerSecond = 0;  ///< streaming read rate, all threads (decode)
  bool measured = false;      ///< calibrated from a real generation (not only probed)
};

/// Work a question costs: FLOPs of the vision encoder and prefill, bytes read per decoded token.
struct QuestionCost {
  double visionFlops = 0;
  double prefillFlops = 0;
  double decodeBytesPerToken = 0;
  int promptTokens = 0;
};

/// A ~0.2 s probe of this machine: a blocked f32 matmul and a streaming sum on @p threads threads (0 = all).
Throughput probeThroughput(int threads = 0);

/// The cost of a prompt of @p promptTokens decoder tokens, @p imagePatches of which are image patches.
/// ref: engine/src/model/forward.cpp (one decoder pass = 2·params FLOPs per row + attention; vision likewise)
QuestionCost questionCost(const pixtral::ModelInfo& info, int promptTokens, int imagePatches);

/// Seconds for @p cost at @p rate, assuming an answer of @p answerTokens tokens. text: "about N s".
TimeEstimate estimateTime(const QuestionCost& cost, const Throughput& rate, int answerTokens);

/// Updates @p rate from a finished generation of @p cost (timings from the engine).
void calibrate(Throughput* rate, const QuestionCost& cost, const pixtral::Timings& timings);

/// "about 40 s", "about 3 min".
QString formatAbout(double seconds);

}  // namespace quire
