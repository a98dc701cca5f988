// SPDX-License-Identifier: Apache-2.0
#include "cli_messages.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unistd.h>

#include "png_io.h"

namespace pixtral::cli {
namespace fs = std::filesystem;
using nlohmann::json;

Result<std::string> base64_decode(const std::string& text) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] != '='; ++i) {
    const int v = val(text[i]);
    if (v < 0) return Status(ErrorCode::format, "invalid base64 character at offset " + std::to_string(i));
    acc = (acc << 6) | unsigned(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xff));
    }
  }
  for (; i < text.size(); ++i)
    if (text[i] != '=') return Status(ErrorCode::format, "invalid base64 padding");
  return out;
}

Result<std::shared_ptr<const Image>> load_image_file(const std::string& path) {
  auto img = read_png(path);
  if (!img.ok()) return img.status();
  return std::shared_ptr<const Image>(std::make_shared<Image>(std::move(img.value())));
}

namespace {

Result<std::shared_ptr<const Image>> load_image_url(const std::string& url, const std::string& base_dir) {
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0)
    return Status(ErrorCode::invalid_argument,
                  "image URL " + url + ": remote images are not fetched (nothing leaves this machine); "
                  "download it and pass a local path");
  if (url.rfind("data:", 0) == 0) {
    const auto comma = url.find(',');
    const std::string meta = url.substr(5, comma == std::string::npos ? 0 : comma - 5);
    if (comma == std::string::npos || meta.find(";base64") == std::string::npos)
      return Status(ErrorCode::invalid_argument, "data URL: only base64 data URLs are supported");
    if (meta.rfind("image/png", 0) != 0)
      return Status(ErrorCode::unsupported, "data URL of type " + meta + ": the CLI reads PNG images only");
    auto bytes = base64_decode(url.substr(comma + 1));
    if (!bytes.ok()) return bytes.status().with_context("data URL");
    char tmpl[] = "/tmp/pixtral-image-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) return Status(ErrorCode::io, "cannot create a temporary file for a data URL image");
    const bool written = ::write(fd, bytes->data(), bytes->size()) == ssize_t(bytes->size());
    ::close(fd);
    auto img = written ? load_image_file(tmpl) : Result<std::shared_ptr<const Image>>(ErrorCode::io, "write failed");
    std::remove(tmpl);
    if (!img.ok()) return img.status().with_context("data URL image");
    return img;
  }
  std::string path = url.rfind("file://", 0) == 0 ? url.substr(7) : url;
  fs::path p(path);
  if (p.is_relative() && !base_dir.empty()) p = fs::path(base_dir) / p;
  if (!fs::exists(p)) return Status(ErrorCode::not_found, "image " + p.string() + " does not exist");
  return load_image_file(p.string());
}

}  // namespace

Result<std::vector<Message>> parse_messages(const std::string& json_text, const std::string& base_dir) {
  json doc = json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) return Status(ErrorCode::format, "messages file is not valid JSON");
  if (doc.is_object() && doc.contains("messages")) doc = doc["messages"];
  if (!doc.is_array()) return Status(ErrorCode::format, "expected a JSON array of messages or {\"messages\": [...]}");
  std::vector<Message> out;
  for (std::size_t i = 0; i < doc.size(); ++i) {
    const json& jm = doc[i];
    const std::string where = "message " + std::to_string(i + 1);
    if (!jm.is_object() || !jm.contains("role") || !jm["role"].is_string())
      return Status(ErrorCode::format, where + ": needs a \"role\"");
    Message m;
    const std::string role = jm["role"];
    if (role == "system") m.role = Role::system;
    else if (role == "user") m.role = Role::user;
    else if (role == "assistant") m.role = Role::assistant;
    else return Status(ErrorCode::format, where + ": unknown role \"" + role + "\"");
    const json content = jm.value("content", json());
    if (content.is_string()) {
      m.parts.push_back(ContentPart::from_text(content.get<std::string>()));
    } else if (content.is_array()) {
      for (const json& part : content) {
        const std::string type = part.is_object() ? part.value("type", "") : "";
        if (type == "text") {
          if (!part.contains("text") || !part["text"].is_string())
            return Status(ErrorCode::format, where + ": text part without \"text\"");
          m.parts.push_back(ContentPart::from_text(part["text"].get<std::string>()));
        } else if (type == "image_url") {
          std::string url;
          if (part.contains("image_url") && part["image_url"].is_string()) url = part["image_url"];
          else if (part.contains("image_url") && part["image_url"].is_object())
            url = part["image_url"].value("url", "");
          if (url.empty()) return Status(ErrorCode::format, where + ": image_url part without a url");
          if (m.role != Role::user) return Status(ErrorCode::format, where + ": only user messages may carry images");
          auto img = load_image_url(url, base_dir);
          if (!img.ok()) return img.status().with_context(where);
          m.parts.push_back(ContentPart::from_image(std::move(img.value())));
        } else {
          return Status(ErrorCode::format, where + ": unsupported content part type \"" + type + "\"");
        }
      }
    } else if (!content.is_null()) {
      return Status(ErrorCode::format, where + ": content must be a string or a list of parts");
    }
    out.push_back(std::move(m));
  }
  if (out.empty()) return Status(ErrorCode::format, "no messages");
  if (out.back().role == Role::assistant)
    return Status(ErrorCode::invalid_argument,
                  "the last message is an assistant message; the conversation must end with a user message");
  return out;
}

Result<std::vector<Message>> load_messages_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(ErrorCode::not_found, "cannot open messages file " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string dir = fs::path(path).parent_path().string();
  auto r = parse_messages(ss.str(), dir);
  if (!r.ok()) return r.status().with_context(path);
  return r;
}

}  // namespace pixtral::cli
