// SPDX-License-Identifier: Apache-2.0
// Instruct v3 prompt builder (tekken), as current mistral-common does it (spec §3): request normalisation
// (system messages joined and glued to the last user turn, same-role merging, leading empty user turn), the
// image-first rule, trailing spaces stripped from assistant text, assistant turns as their exact token ids + </s>,
// and the image token grid ([IMG]×Wp + [IMG_BREAK] per row, the last one → [IMG_END]). Image runs are recorded
// where they are emitted — the model never scans for id 10.
#pragma once

#include <functional>
#include <span>

#include "pixtral/session.h"
#include "pixtral/tokenizer.h"

namespace pixtral {

/// Patch grid (Wp, Hp) of an image after the model's resize.
using ImageGridFn = std::function<Result<std::pair<int, int>>(const Image& image)>;

/// Encode a conversation ending with a user turn into prompt ids (starting with <s>, ending with [/INST]).
/// Errors: no user turn, a final assistant message, an empty image, invalid UTF-8.
Result<Prompt> build_prompt_v3(const Tokenizer& tok, std::span<const Message> messages, const ImageGridFn& grid);

}  // namespace pixtral
