// The cache's housekeeping on its own thread: GC every `gc_interval` seconds and, with a state
// directory, a snapshot when the cache changed, at most every `save_interval` seconds and once
// more when stopped. Uses the wall clock (expiries are absolute Unix times).
#ifndef ACNS_LIB_FQDN_MAINTAINER_H_
#define ACNS_LIB_FQDN_MAINTAINER_H_

#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/state.h"

namespace acns::fqdn {

UnixSeconds WallClockNow();

class Maintainer {
 public:
  struct Options {
    UnixSeconds gc_interval = 60;
    std::string state_dir;  // empty: no snapshots
    UnixSeconds save_interval = 5;
    // Told the outcome of every save that wrote or failed (e.g. a full disk: the next attempt
    // comes at the next tick), on the maintainer's thread or in the destructor.
    std::function<void(const absl::Status&)> on_save;
  };

  Maintainer(FqdnCache* cache, Options options);
  ~Maintainer();  // stops the thread and writes a last snapshot
  // The owner saved into state_dir itself: background saves may overwrite it (StateSaver).
  void AllowOverwrite() { saver_.AllowOverwrite(); }
  Maintainer(const Maintainer&) = delete;
  Maintainer& operator=(const Maintainer&) = delete;

 private:
  void Run();
  void SaveNow(bool force);

  FqdnCache* cache_;
  Options options_;
  StateSaver saver_;
  absl::Mutex mu_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_MAINTAINER_H_
