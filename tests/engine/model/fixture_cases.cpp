// SPDX-License-Identifier: Apache-2.0
// Fixture reading for the model fidelity tests (see fixture_cases.h).
// ref: tests/fixtures/models/make_fixtures.py
#include "fixture_cases.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "png_io.h"

namespace fixture {

using nlohmann::json;

fs::path models_dir() { return fs::path(QUIRE_FIXTURES_DIR) / "models"; }

std::string missing_fixtures_hint() {
  return "no model fixtures under " + models_dir().string() +
         " — generate them on the GPU machine: python3 tests/fixtures/models/make_fixtures.py";
}

std::vector<float> read_f32(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    ADD_FAILURE() << "cannot open " << path;
    return {};
  }
  f.seekg(0, std::ios::end);
  const auto n = static_cast<std::size_t>(f.tellg());
  f.seekg(0);
  std::vector<float> out(n / sizeof(float));
  f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
  if (n % sizeof(float) != 0) ADD_FAILURE() << path << ": size " << n << " is not a multiple of 4";
  return out;
}

double rel_l2(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

static bool load_case(const fs::path& dir, Case& c) {
  std::ifstream f(dir / "case.json");
  if (!f) return false;
  try {
    f >> c.json;
    const json& j = c.json;
    c.dir = dir;
    c.model_dir = dir.parent_path().parent_path();
    c.model = j.at("model").get<std::string>();
    c.name = j.at("case").get<std::string>();
    c.dtype = j.at("weights_dtype").get<std::string>();
    c.prompt_tokens = j.at("prompt_tokens").get<std::vector<int>>();
    c.greedy_tokens = j.at("greedy_tokens").get<std::vector<int>>();
    c.finish_reason = j.at("finish_reason").get<std::string>();
    c.logits_rows = j.at("logits_rows").get<int>();
    c.vocab = j.at("vocab").get<int>();
    c.followup = j.value("followup", "");
    c.system_variant = j.value("system_variant", "");
    for (const json& im : j.at("images")) {
      ImageRef r;
      r.png = im.at("png").get<std::string>();
      r.pixels = im.at("pixels").get<std::string>();
      r.grid_w = im.at("grid").at(0).get<int>();
      r.grid_h = im.at("grid").at(1).get<int>();
      r.start = im.at("start").get<std::size_t>();
      r.pixel_shape = im.at("pixel_shape").get<std::vector<int>>();
      c.images.push_back(r);
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << dir << "/case.json: " << e.what();
    return false;
  }
  c.logits = read_f32(dir / c.json.value("logits_file", "logits.f32"));
  if (c.logits.size() != std::size_t(c.logits_rows) * c.vocab) {
    ADD_FAILURE() << c.id() << ": logits file has " << c.logits.size() << " floats, expected " << c.logits_rows
                  << " x " << c.vocab;
    return false;
  }
  return true;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    std::vector<Case> out;
    std::error_code ec;
    if (!fs::is_directory(models_dir(), ec)) return out;
    std::vector<fs::path> dirs;
    for (const auto& m : fs::directory_iterator(models_dir(), ec)) {
      const fs::path cd = m.path() / "cases";
      if (!fs::is_directory(cd, ec)) continue;
      for (const auto& c : fs::directory_iterator(cd, ec))
        if (fs::exists(c.path() / "case.json", ec)) dirs.push_back(c.path());
    }
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) {
      Case c;
      if (load_case(d, c)) out.push_back(std::move(c));
    }
    return out;
  }();
  return all;
}

static pixtral::Result<std::shared_ptr<const pixtral::Image>> load_image(const std::string& url,
                                                                          const fs::path& base) {
  std::string path = url.rfind("file://", 0) == 0 ? url.substr(7) : url;
  fs::path p(path);
  if (p.is_relative()) p = base / p;
  auto img = pixtral::read_png(p.string());
  if (!img.ok()) return img.status();
  return std::shared_ptr<const pixtral::Image>(std::make_shared<pixtral::Image>(std::move(img.value())));
}

pixtral::Result<std::vector<pixtral::Message>> parse_messages(const json& msgs, const fs::path& base) {
  using pixtral::ErrorCode;
  std::vector<pixtral::Message> out;
  const json& arr = msgs.is_object() ? msgs.at("messages") : msgs;
  for (const json& m : arr) {
    pixtral::Message msg;
    const std::string role = m.at("role").get<std::string>();
    if (role == "system") msg.role = pixtral::Role::system;
    else if (role == "user") msg.role = pixtral::Role::user;
    else if (role == "assistant") msg.role = pixtral::Role::assistant;
    else return {ErrorCode::invalid_argument, "unknown role " + role};
    const json& content = m.at("content");
    if (content.is_string()) {
      msg.parts.push_back(pixtral::ContentPart::from_text(content.get<std::string>()));
    } else {
      for (const json& part : content) {
        const std::string type = part.at("type").get<std::string>();
        if (type == "text") {
          msg.parts.push_back(pixtral::ContentPart::from_text(part.at("text").get<std::string>()));
        } else if (type == "image_url") {
          const json& iu = part.at("image_url");
          auto img = load_image(iu.is_string() ? iu.get<std::string>() : iu.at("url").get<std::string>(), base);
          if (!img.ok()) return img.status();
          msg.parts.push_back(pixtral::ContentPart::from_image(img.value()));
        } else {
          return {ErrorCode::invalid_argument, "unknown content part type " + type};
        }
      }
    }
    out.push_back(std::move(msg));
  }
  return out;
}

std::shared_ptr<pixtral::Model> load_model(const fs::path& dir) {
  static std::map<std::string, std::shared_ptr<pixtral::Model>> loaded;
  auto it = loaded.find(dir.string());
  if (it != loaded.end()) return it->second;
  pixtral::LoadOptions opt;
  opt.device = pixtral::Device::cpu;
  opt.threads = 2;
  auto m = pixtral::Model::load(dir.string(), opt);
  if (!m.ok()) {
    ADD_FAILURE() << "Model::load(" << dir << "): " << m.status().to_string();
    return nullptr;
  }
  loaded[dir.string()] = m.value();
  return m.value();
}

pixtral::Result<Run> run_greedy(pixtral::Session& session, std::span<const pixtral::Message> messages,
                                int max_tokens) {
  Run run;
  pixtral::GenerateParams p;
  p.temperature = 0.0f;
  p.top_p = 1.0f;
  p.top_k = 0;
  p.max_tokens = max_tokens;
  auto g = session.generate(messages, p, {}, [&](std::span<const float> l) {
    run.logits.emplace_back(l.begin(), l.end());
  });
  if (!g.ok()) return g.status();
  run.gen = std::move(g.value());
  return run;
}

}  // namespace fixture
