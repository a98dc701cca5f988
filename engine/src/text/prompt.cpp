// SPDX-License-Identifier: Apache-2.0
// Instruct v3 prompt builder (spec §3.1–3.3, §5). Two steps, as mistral-common does them: normalise the request
// (system prompts out and joined, same-role runs merged, adjacent user texts joined, leading empty user turn),
// then encode turn by turn. Image runs are recorded as they are emitted.
// ref: mistral-common src/mistral_common/protocol/instruct/normalize.py InstructRequestNormalizer;
//      src/mistral_common/tokens/tokenizers/instruct.py InstructTokenizerV3 (encode_user_content, image-first).
#include "text/prompt.h"

#include <optional>

namespace pixtral {

namespace {

constexpr std::string_view kJoin = "\n\n";

/// A user turn after normalisation: text-only (one string, possibly empty) or a list of chunks.
struct UserTurn {
  std::vector<ContentPart> chunks;  // adjacent texts already joined; text-only turns hold one text chunk
};

struct AssistantTurn {
  std::string text;
  std::vector<int> tokens;  // exact ids when known (only for an unmerged message)
};

struct Turn {
  Role role;
  UserTurn user;
  AssistantTurn assistant;
};

std::string role_name(Role r) {
  switch (r) {
    case Role::system: return "system";
    case Role::user: return "user";
    case Role::assistant: return "assistant";
  }
  return "?";
}

/// Text parts of a message joined with "\n\n"; images are an error (system / assistant messages).
Result<std::string> text_only(const Message& m, std::size_t index) {
  std::string out;
  bool first = true;
  for (const ContentPart& p : m.parts) {
    if (p.kind != ContentPart::Kind::text) {
      return Status(ErrorCode::invalid_argument, "message " + std::to_string(index) + " (" + role_name(m.role) +
                                                     "): images are only allowed in user messages");
    }
    if (!first) out += kJoin;
    out += p.text;
    first = false;
  }
  return out;
}

/// Spec §3.1: system prompt S (nullopt when there is none) and the merged user/assistant turns.
Status normalise(std::span<const Message> messages, std::optional<std::string>* system, std::vector<Turn>* turns) {
  std::vector<std::string> system_parts;
  // Runs of same-role messages, merged as mistral-common's _aggregate_user/assistant_messages do.
  std::size_t i = 0;
  while (i < messages.size()) {
    const Message& m = messages[i];
    if (m.role == Role::system) {
      auto t = text_only(m, i);
      if (!t) return t.status();
      system_parts.push_back(std::move(*t));
      ++i;
      continue;
    }
    // Consecutive messages of m's role; system messages in between do not break the run (they are removed
    // from the list before aggregation).
    std::vector<std::size_t> run;
    std::size_t j = i;
    for (; j < messages.size(); ++j) {
      if (messages[j].role == Role::system) {
        auto t = text_only(messages[j], j);
        if (!t) return t.status();
        system_parts.push_back(std::move(*t));
        continue;
      }
      if (messages[j].role != m.role) break;
      run.push_back(j);
    }
    i = j;
    Turn turn{m.role, {}, {}};
    if (m.role == Role::user) {
      std::vector<ContentPart>& all = turn.user.chunks;
      std::vector<std::string> texts;
      auto flush = [&] {
        std::string joined;
        for (std::size_t k = 0; k < texts.size(); ++k) joined += (k ? std::string(kJoin) : "") + texts[k];
        texts.clear();
        return joined;
      };
      for (std::size_t k : run) {
        for (const ContentPart& p : messages[k].parts) {
          if (p.kind == ContentPart::Kind::text) {
            texts.push_back(p.text);
            continue;
          }
          if (!p.image) {
            return Status(ErrorCode::invalid_argument, "message " + std::to_string(k) + ": image part is empty");
          }
          if (!texts.empty()) all.push_back(ContentPart::from_text(flush()));
          all.push_back(p);
        }
      }
      const bool had_texts = !texts.empty();
      std::string tail = flush();
      // mistral-common: a text-only turn is a string (possibly empty); after images an empty tail is dropped.
      if (all.empty() || (had_texts && !tail.empty())) all.push_back(ContentPart::from_text(std::move(tail)));
    } else {
      if (run.size() == 1) turn.assistant.tokens = messages[run[0]].tokens;  // merged turns re-encode text
      for (std::size_t k = 0; k < run.size(); ++k) {
        auto t = text_only(messages[run[k]], run[k]);
        if (!t) return t.status();
        if (k) turn.assistant.text += kJoin;
        turn.assistant.text += *t;
      }
    }
    turns->push_back(std::move(turn));
  }
  if (!system_parts.empty()) {
    std::string s;
    for (std::size_t k = 0; k < system_parts.size(); ++k) s += (k ? std::string(kJoin) : "") + system_parts[k];
    *system = std::move(s);
  }
  if (turns->empty()) {
    return Status(ErrorCode::invalid_argument, "the conversation has no user message");
  }
  if (turns->back().role != Role::user) {
    return Status(ErrorCode::invalid_argument,
                  "the conversation must end with a user message (a final assistant message is not supported)");
  }
  if (turns->front().role != Role::user) {  // spec §3.1 step 3
    Turn empty{Role::user, {}, {}};
    empty.user.chunks.push_back(ContentPart::from_text(""));
    turns->insert(turns->begin(), std::move(empty));
  }
  return Status::success();
}

Status append_text(const Tokenizer& tok, std::string_view text, std::vector<int>& out) {
  auto ids = tok.encode(text);
  if (!ids) return ids.status();
  out.insert(out.end(), ids->begin(), ids->end());
  return Status::success();
}

}  // namespace

Result<Prompt> build_prompt_v3(const Tokenizer& tok, std::span<const Message> messages, const ImageGridFn& grid) {
  if (messages.empty()) return Status(ErrorCode::invalid_argument, "the conversation has no messages");
  std::optional<std::string> system;
  std::vector<Turn> turns;
  PIXTRAL_RETURN_IF_ERROR(normalise(messages, &system, &turns));

  const SpecialIds& sp = tok.special();
  Prompt prompt;
  std::vector<int>& out = prompt.tokens;
  out.push_back(sp.bos);
  std::size_t last_user = 0;
  for (std::size_t t = 0; t < turns.size(); ++t) {
    if (turns[t].role == Role::user) last_user = t;
  }
  for (std::size_t t = 0; t < turns.size(); ++t) {
    Turn& turn = turns[t];
    if (turn.role == Role::assistant) {
      if (!turn.assistant.tokens.empty()) {  // the exact ids the model generated
        out.insert(out.end(), turn.assistant.tokens.begin(), turn.assistant.tokens.end());
        if (turn.assistant.tokens.back() != sp.eos) out.push_back(sp.eos);
        continue;
      }
      std::string_view text = turn.assistant.text;
      while (!text.empty() && text.back() == ' ') text.remove_suffix(1);  // mistral-common rstrip(" ")
      PIXTRAL_RETURN_IF_ERROR(append_text(tok, text, out));
      out.push_back(sp.eos);
      continue;
    }
    std::vector<ContentPart>& chunks = turn.user.chunks;
    // Image-first rule (current mistral-common): ≥2 chunks, the last an image, all earlier ones text.
    if (chunks.size() >= 2 && chunks.back().kind == ContentPart::Kind::image) {
      bool earlier_text = true;
      for (std::size_t k = 0; k + 1 < chunks.size(); ++k) earlier_text &= chunks[k].kind == ContentPart::Kind::text;
      if (earlier_text) {
        ContentPart img = std::move(chunks.back());
        chunks.pop_back();
        chunks.insert(chunks.begin(), std::move(img));
      }
    }
    out.push_back(sp.inst);
    if (t == last_user && system && !system->empty()) {
      PIXTRAL_RETURN_IF_ERROR(append_text(tok, *system + std::string(kJoin), out));  // its own BPE call
    }
    for (const ContentPart& c : chunks) {
      if (c.kind == ContentPart::Kind::text) {
        PIXTRAL_RETURN_IF_ERROR(append_text(tok, c.text, out));
        continue;
      }
      if (!grid) return Status(ErrorCode::invalid_argument, "an image was given but no image grid function");
      auto g = grid(*c.image);
      if (!g) return g.status();
      const auto [wp, hp] = *g;
      if (wp <= 0 || hp <= 0) {
        return Status(ErrorCode::invalid_argument, "image grid of " + std::to_string(wp) + "x" +
                                                       std::to_string(hp) + " patches is empty");
      }
      // Spec §5: per row [IMG]×Wp then [IMG_BREAK]; the last [IMG_BREAK] becomes [IMG_END].
      prompt.images.push_back(ImageRun{out.size(), wp, hp});
      for (int r = 0; r < hp; ++r) {
        out.insert(out.end(), std::size_t(wp), sp.img);
        out.push_back(r + 1 < hp ? sp.img_break : sp.img_end);
      }
    }
    out.push_back(sp.inst_end);
  }
  return prompt;
}

}  // namespace pixtral
