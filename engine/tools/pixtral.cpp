// SPDX-License-Identifier: Apache-2.0
// `pixtral`: the engine's command line (Qt-free). generate | tokenize | bench.
// Errors go to stderr with a non-zero exit code: 2 bad arguments, 3 model/input error, 4 generation error.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <execinfo.h>
#include <unistd.h>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_messages.h"
#include "pixtral/log.h"
#include "pixtral/model.h"

#ifdef PIXTRAL_HAVE_BENCH
int run_bench(int argc, char** argv);
#endif

namespace {
using namespace pixtral;
using nlohmann::json;

const char* kUsage =
    "usage: pixtral generate --model DIR [--image FILE]... [--prompt TEXT] [--system TEXT] | --messages FILE.json\n"
    "                        [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--context N]\n"
    "                        [--device auto|cpu|cuda] [--precision auto|bf16|int8|int4] [--threads N] [--json]\n"
    "                        [--dump-logits FILE] [--no-quant-cache | --quant-cache DIR]\n"
    "       pixtral tokenize --model DIR (--text TEXT | --text-file F | -) [--json]\n"
    "       pixtral tokenize --model DIR --decode ID...\n"
    "       pixtral bench [--model DIR] [--precision auto|bf16|int8|int4] [--quick] [--json] [--context N]\n"
    "                     [--accuracy N]\n";

int fail(int code, const std::string& msg) {
  std::fprintf(stderr, "pixtral: %s\n", msg.c_str());
  return code;
}

struct Args {
  std::vector<std::string> v;
  std::size_t i = 0;
  bool more() const { return i < v.size(); }
  const std::string& next() { return v[i++]; }
};

bool parse_int(const std::string& s, long long& out) {
  char* end = nullptr;
  out = std::strtoll(s.c_str(), &end, 10);
  return !s.empty() && *end == 0;
}
bool parse_float(const std::string& s, float& out) {
  char* end = nullptr;
  out = std::strtof(s.c_str(), &end);
  return !s.empty() && *end == 0;
}

std::string tokenizer_path_of(const std::string& dir) { return dir + "/tekken.json"; }

int cmd_tokenize(Args& a) {
  std::string model, text, text_file;
  bool json_out = false, decode = false, from_stdin = false, have_text = false;
  std::vector<int> ids;
  while (a.more()) {
    const std::string f = a.next();
    auto need = [&](std::string& dst) {
      if (!a.more()) return false;
      dst = a.next();
      return true;
    };
    if (f == "--model") { if (!need(model)) return fail(2, "--model needs a folder"); }
    else if (f == "--text") { if (!need(text)) return fail(2, "--text needs a value"); have_text = true; }
    else if (f == "--text-file") { if (!need(text_file)) return fail(2, "--text-file needs a path"); }
    else if (f == "-") from_stdin = true;
    else if (f == "--json") json_out = true;
    else if (f == "--decode") decode = true;
    else if (decode) {
      long long id;
      if (!parse_int(f, id)) return fail(2, "--decode: not a token id: " + f);
      ids.push_back(int(id));
    } else return fail(2, "tokenize: unknown argument " + f);
  }
  if (model.empty()) return fail(2, "tokenize: --model DIR is required");
  auto tok = Tokenizer::load(tokenizer_path_of(model));
  if (!tok.ok()) return fail(3, tok.status().message());
  if (decode) {
    for (int id : ids)
      if (id < 0 || id >= tok->vocab_size()) return fail(2, "--decode: id " + std::to_string(id) + " out of range");
    std::cout << tok->decode(ids) << "\n";
    return 0;
  }
  if (int(have_text) + int(!text_file.empty()) + int(from_stdin) != 1)
    return fail(2, "tokenize: give exactly one of --text, --text-file, -");
  if (!text_file.empty() || from_stdin) {
    std::stringstream ss;
    if (from_stdin) {
      ss << std::cin.rdbuf();
    } else {
      std::ifstream f(text_file, std::ios::binary);
      if (!f) return fail(3, "cannot open " + text_file);
      ss << f.rdbuf();
    }
    text = ss.str();
  }
  auto enc = tok->encode(text);
  if (!enc.ok()) return fail(3, enc.status().message());
  if (json_out) {
    std::cout << json(enc.value()).dump() << "\n";
  } else {
    for (std::size_t i = 0; i < enc->size(); ++i) std::cout << (i ? " " : "") << (*enc)[i];
    std::cout << "\n";
  }
  return 0;
}

int cmd_generate(Args& a) {
  std::string model, messages_file, prompt, system, dump_logits, device = "auto";
  std::vector<std::string> images;
  bool json_out = false, have_prompt = false, have_system = false;
  GenerateParams gp;
  SessionOptions so;
  LoadOptions lo;
  while (a.more()) {
    const std::string f = a.next();
    std::string val;
    auto need = [&]() {
      if (!a.more()) return false;
      val = a.next();
      return true;
    };
    long long n = 0;
    float x = 0;
    if (f == "--json") { json_out = true; continue; }
    if (f == "--no-quant-cache") { lo.quant_cache = QuantCache::off; continue; }  // docs/quant-cache.md
    if (!need()) return fail(2, f + " needs a value (or is unknown)");
    if (f == "--model") model = val;
    else if (f == "--quant-cache") lo.quant_cache_dir = val;
    else if (f == "--image") images.push_back(val);
    else if (f == "--prompt") { prompt = val; have_prompt = true; }
    else if (f == "--system") { system = val; have_system = true; }
    else if (f == "--messages") messages_file = val;
    else if (f == "--dump-logits") dump_logits = val;
    else if (f == "--device") device = val;
    else if (f == "--precision") {
      if (!parse_precision(val, &lo.precision)) return fail(2, "--precision must be auto, bf16, int8 or int4");
    }
    else if (f == "--max-tokens") { if (!parse_int(val, n) || n < 1) return fail(2, "--max-tokens: positive integer"); gp.max_tokens = int(n); }
    else if (f == "--context") { if (!parse_int(val, n) || n < 16) return fail(2, "--context: integer ≥ 16"); so.context_length = int(n); }
    else if (f == "--top-k") { if (!parse_int(val, n) || n < 0) return fail(2, "--top-k: integer ≥ 0"); gp.top_k = int(n); }
    else if (f == "--seed") { if (!parse_int(val, n)) return fail(2, "--seed: integer"); gp.seed = std::uint64_t(n); }
    else if (f == "--threads") { if (!parse_int(val, n) || n < 0) return fail(2, "--threads: integer ≥ 0"); lo.threads = int(n); }
    else if (f == "--temperature") { if (!parse_float(val, x) || x < 0) return fail(2, "--temperature: number ≥ 0"); gp.temperature = x; }
    else if (f == "--top-p") { if (!parse_float(val, x) || x <= 0 || x > 1) return fail(2, "--top-p: number in (0, 1]"); gp.top_p = x; }
    else return fail(2, "generate: unknown argument " + f);
  }
  if (model.empty()) return fail(2, "generate: --model DIR is required");
  if (device == "auto") lo.device = Device::automatic;
  else if (device == "cpu") lo.device = Device::cpu;
  else if (device == "cuda") lo.device = Device::cuda;
  else return fail(2, "--device must be auto, cpu or cuda");
  if (!messages_file.empty() && (have_prompt || have_system || !images.empty()))
    return fail(2, "--messages cannot be combined with --prompt, --image or --system");
  if (messages_file.empty() && !have_prompt && images.empty())
    return fail(2, "generate: give --prompt and/or --image, or --messages FILE");

  std::vector<Message> messages;
  if (!messages_file.empty()) {
    auto r = cli::load_messages_file(messages_file);
    if (!r.ok()) return fail(r.status().code() == ErrorCode::invalid_argument ? 2 : 3, r.status().message());
    messages = std::move(r.value());
  } else {
    if (have_system) messages.push_back(Message::system_text(system));
    Message user;
    for (const auto& path : images) {
      auto img = cli::load_image_file(path);
      if (!img.ok()) return fail(3, img.status().message());
      user.parts.push_back(ContentPart::from_image(std::move(img.value())));
    }
    if (have_prompt) user.parts.push_back(ContentPart::from_text(prompt));
    messages.push_back(std::move(user));
  }

  const auto t0 = std::chrono::steady_clock::now();
  auto m = Model::load(model, lo);
  if (!m.ok()) return fail(3, m.status().message());
  const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  auto session = (*m)->create_session(so);
  if (!session.ok()) return fail(3, session.status().message());

  std::ofstream logits_out;
  if (!dump_logits.empty()) {
    logits_out.open(dump_logits, std::ios::binary);
    if (!logits_out) return fail(3, "cannot write " + dump_logits);
  }
  std::FILE* stream = json_out ? stderr : stdout;
  auto on_piece = [&](std::string_view piece, int) {
    std::fwrite(piece.data(), 1, piece.size(), stream);
    std::fflush(stream);
    return true;
  };
  auto on_logits = [&](std::span<const float> l) {
    if (logits_out) logits_out.write(reinterpret_cast<const char*>(l.data()), std::streamsize(l.size_bytes()));
  };
  auto gen = (*session)->generate(messages, gp, on_piece, dump_logits.empty() ? LogitsCallback{} : on_logits);
  std::fputc('\n', stream);
  if (!gen.ok()) return fail(gen.status().code() == ErrorCode::context_overflow ? 3 : 4, gen.status().message());
  if (json_out) {
    const Timings& t = gen->timings;
    json j = {{"prompt_tokens", gen->prompt_tokens},
              {"tokens", gen->tokens},
              {"text", gen->text},
              {"finish_reason", finish_reason_name(gen->finish)},
              {"timings",
               {{"load_ms", load_ms},
                {"preprocess_ms", t.preprocess_ms},
                {"vision_ms", t.vision_ms},
                {"prefill_ms", t.prefill_ms},
                {"ttft_ms", t.ttft_ms},
                {"decode_ms_per_token", t.decode_ms_per_token}}},
              {"device", (*m)->info().device_name},
              {"quant_cache", (*m)->info().quant_cache}};
    std::printf("%s\n", j.dump(-1, ' ', true, json::error_handler_t::replace).c_str());
  }
  return 0;
}

}  // namespace

// A crash prints where it happened (function names need -rdynamic) instead of dying silently.
extern "C" void pixtral_crash_handler(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  const char msg[] = "pixtral: crashed; backtrace:\n";
  (void)!write(2, msg, sizeof msg - 1);
  backtrace_symbols_fd(frames, n, 2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int main(int argc, char** argv) {
  std::signal(SIGSEGV, pixtral_crash_handler);
  std::signal(SIGABRT, pixtral_crash_handler);
  if (argc < 2) return fail(2, std::string("missing command\n") + kUsage);
  const std::string cmd = argv[1];
  Args a;
  for (int i = 2; i < argc; ++i) a.v.push_back(argv[i]);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "generate") return cmd_generate(a);
  if (cmd == "tokenize") return cmd_tokenize(a);
  if (cmd == "bench") {
#ifdef PIXTRAL_HAVE_BENCH
    return run_bench(argc - 1, argv + 1);
#else
    return fail(2, "bench: this build has no benchmark (built without CUDA)");
#endif
  }
  return fail(2, "unknown command " + cmd + "\n" + kUsage);
}
