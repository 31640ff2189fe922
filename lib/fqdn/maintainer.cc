#include "lib/fqdn/maintainer.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace acns::fqdn {

UnixSeconds WallClockNow() { return absl::ToUnixSeconds(absl::Now()); }

Maintainer::Maintainer(FqdnCache* cache, Options options)
    : cache_(cache),
      options_(std::move(options)),
      saver_(cache, options_.state_dir, options_.save_interval),
      thread_([this] { Run(); }) {}

Maintainer::~Maintainer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
  SaveNow(/*force=*/true);
}

void Maintainer::SaveNow(bool force) {
  if (options_.state_dir.empty()) return;
  auto saved = saver_.MaybeSave(WallClockNow(), force);
  if (options_.on_save && (!saved.ok() || *saved)) options_.on_save(saved.status());
}

void Maintainer::Run() {
  const UnixSeconds tick = std::max<UnixSeconds>(
      1, options_.state_dir.empty() ? options_.gc_interval
                                    : std::min(options_.gc_interval, options_.save_interval));
  UnixSeconds next_gc = WallClockNow() + options_.gc_interval;
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(tick))) {
    mu_.Unlock();
    const UnixSeconds now = WallClockNow();
    if (now >= next_gc) {
      cache_->Gc(now);
      next_gc = now + options_.gc_interval;
    }
    SaveNow(/*force=*/false);
    mu_.Lock();
  }
}

}  // namespace acns::fqdn
