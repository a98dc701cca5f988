// SPDX-License-Identifier: Apache-2.0
// A GPU that fails mid-conversation (issue 4, Faults: "a GPU error or lost device → an error, never a hang").
// The CUDA backend's test hook queues a trapping kernel, which leaves the context in the sticky error state a
// reset or lost device leaves behind. The session must then answer with ErrorCode::device and a message saying
// what to do, promptly, on every later call too; creating a session must fail cleanly; nothing may wait forever.
// Its own binary: the fault is irreversible for the process.
#include <gtest/gtest.h>

#include <chrono>

#include "cuda/cuda_ext.h"
#include "fixture_cases.h"
#include "pixtral/model.h"
#include "runtime/impl.h"

namespace pixtral {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

TEST(CudaLostDevice, SessionReportsTheFaultPromptlyAndKeepsFailingCleanly) {
  if (fixture::cases().empty()) GTEST_SKIP() << fixture::missing_fixtures_hint();
  LoadOptions o;
  o.device = Device::cuda;
  auto model = Model::load((fixture::cases().front().model_dir / "native").string(), o);
  if (!model.ok()) GTEST_SKIP() << "no CUDA backend: " << model.status().to_string();
  ops::CudaExtension* ext = ops::cuda_extension(*(*model)->impl().backend);
  ASSERT_NE(ext, nullptr);

  auto session = (*model)->create_session({.context_length = 256});
  ASSERT_TRUE(session.ok()) << session.status().to_string();
  const Message msgs[] = {Message::user_text("Describe the weather in three words.")};
  GenerateParams gp;
  gp.temperature = 0;
  gp.max_tokens = 4;
  auto first = (*session)->generate(msgs, gp);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_FALSE((*session)->cached_tokens().empty());

  ASSERT_TRUE(ext->inject_device_fault().ok());
  const auto t0 = Clock::now();
  auto failed = (*session)->generate(msgs, gp);
  const double took = seconds_since(t0);
  ASSERT_FALSE(failed.ok()) << "a faulted GPU must not produce an answer";
  EXPECT_EQ(failed.status().code(), ErrorCode::device) << failed.status().to_string();
  EXPECT_NE(failed.status().message().find("reload the model"), std::string::npos) << failed.status().message();
  EXPECT_LT(took, 30.0) << "the error must come promptly, not after a hang";
  EXPECT_TRUE((*session)->cached_tokens().empty()) << "a cache of unknown state must be forgotten";

  // Every later call fails the same way (no stale success, no hang).
  auto again = (*session)->generate(msgs, gp);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), ErrorCode::device) << again.status().to_string();
  auto fresh = (*model)->create_session({.context_length = 256});
  if (fresh.ok()) {
    auto r = (*fresh)->generate(msgs, gp);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::device) << r.status().to_string();
  } else {
    EXPECT_TRUE(fresh.status().code() == ErrorCode::device || fresh.status().code() == ErrorCode::out_of_memory)
        << fresh.status().to_string();
  }
  std::cout << "[ info ] after the fault: " << failed.status().message() << "\n";
}

}  // namespace
}  // namespace pixtral
