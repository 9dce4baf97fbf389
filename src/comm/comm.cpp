#include "src/comm/comm.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "src/base/errors.h"
// The collective libraries this build has: Gloo (Debian's libgloo-dev, or a LibTorch that ships
// its headers) and, in a CUDA build, NCCL.
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace mmdflow {

std::vector<std::vector<double>> Comm::gather(const std::vector<double>& values) {
  const int64_t k = int64_t(values.size());
  at::Tensor all = at::zeros({world(), k}, at::kDouble);
  if (k > 0) std::memcpy(all[rank()].data_ptr<double>(), values.data(), k * sizeof(double));
  sum(all);
  std::vector<std::vector<double>> out(world(), std::vector<double>(k));
  for (int r = 0; r < world(); ++r)
    if (k > 0) std::memcpy(out[r].data(), all[r].data_ptr<double>(), k * sizeof(double));
  return out;
}

std::vector<std::vector<double>> gather_after(Comm& comm, size_t n,
                                              const std::function<std::vector<double>()>& act,
                                              const std::function<void(int, int)>& failed) {
  std::exception_ptr error;
  std::vector<double> mine;
  try {
    mine = act();
  } catch (...) {
    error = std::current_exception();
  }
  mine.resize(n);
  mine.push_back(double(exit_code_of(error)));
  auto all = comm.gather(mine);
  if (error) std::rethrow_exception(error);
  for (int r = 0; r < comm.world(); ++r)
    if (const int code = int(all[r][n]); code != kOk) {
      failed(r, code);
      throw Failed(fmt::format("rank {} failed (exit {})", r, code), code);
    }
  for (auto& v : all) v.pop_back();
  return all;
}

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

class Single : public Comm {
 public:
  Single() : Comm(0, 1, 0) {}
  void sum(at::Tensor&) override {}
  std::string from_rank0(const std::string&, const std::string& text) override { return text; }
};

// The store at `port`: its server (rank 0, never waiting for the others) or a client.
c10d::TCPStoreOptions store_options(int port, bool server, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = uint16_t(port);
  o.isServer = server;
  o.waitWorkers = false;
  o.timeout = timeout;
  return o;
}

// Silences stderr while one lives (counted: ranks may be threads of one process): c10d's socket
// code logs its retries there, and a failed rendezvous gets one line of its own instead.
class QuietStderr {
 public:
  QuietStderr() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (count_++ > 0) return;
    saved_ = ::dup(2);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, 2), ::close(null);
  }
  ~QuietStderr() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--count_ > 0 || saved_ < 0) return;
    ::dup2(saved_, 2), ::close(saved_);
    saved_ = -1;
  }
  QuietStderr(const QuietStderr&) = delete;
  QuietStderr& operator=(const QuietStderr&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int count_ = 0;
  static inline int saved_ = -1;
};

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
// A job's text read from the store, for a message: one line of at most 200 bytes.
std::string readable(const std::string& job) {
  std::string out = job.substr(0, 200);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}
std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string text(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

using Store = c10::intrusive_ptr<c10d::TCPStore>;

// The rendezvous (connect()). Rank 0 hosts the store and writes kJob first; every rank then reads
// it and leaves, untouched, unless it is its own job; it claims its rank (kClaim: a second claim
// is a duplicate) and counts itself in kJoined. The verdict is written once (compareSet): "+"
// when rank 0 saw every rank joined, "-<why>" at the first deadline or duplicate. Each process
// waits for it until its own deadline, polling its stop function.
constexpr const char* kJob = "mmdflow/meet/job";
constexpr const char* kJoined = "mmdflow/meet/joined";
constexpr const char* kMeetVerdict = "mmdflow/meet/verdict";
constexpr const char* kCame = "mmdflow/meet/came";  // processes of this job, duplicates too
constexpr const char* kRead = "mmdflow/meet/read";  // those that read a failed verdict
std::string claim_key(int r) { return fmt::format("mmdflow/meet/claim/{}", r); }
std::string stranger_key(int r) { return fmt::format("mmdflow/meet/stranger/{}", r); }
constexpr milliseconds kTry{1000};     // a connection attempt, or a store's first answer
constexpr milliseconds kAnswer{5000};  // any later answer of the store while meeting
constexpr milliseconds kPoll{50};
constexpr milliseconds kMesh{5000};  // the backend's mesh, once every rank met

class Rendezvous {
 public:
  Rendezvous(const Launch& l, double timeout_s, const Meeting& m)
      : l_(l),
        timeout_s_(timeout_s),
        timeout_(int64_t(timeout_s * 1000)),
        meeting_(m),
        where_(fmt::format("{}:{}", l.master_addr, l.master_port)),
        job_(fmt::format("{}{}{} processes{}", m.job, m.job.empty() ? "" : ", ", l.world,
                         l.job.empty() ? "" : ", " + l.job)),
        deadline_(clock_type::now() + timeout_) {}

  clock_type::time_point deadline() const { return deadline_; }

  // Polls the stop function: throws Stopped.
  void poll() const {
    if (!meeting_.stop) return;
    if (const int sig = meeting_.stop()) throw Stopped(sig);
  }

  // The store, every rank met; throws ConfigError naming what went wrong, or Stopped.
  Store meet() {
    Store s = l_.rank == 0 ? host() : reach();
    try {
      return join(s);
    } catch (const ConfigError&) {
      throw;
    } catch (const Stopped&) {
      throw;
    } catch (const std::exception& e) {  // the store's connection broke
      throw ConfigError(fmt::format("lost the rendezvous at {}{}: {}", where_,
                                    l_.rank == 0 ? "" : " (rank 0, which holds it, is gone)",
                                    first_line(e.what())));
    }
  }

 private:
  Store join(const Store& s) {
    s->wait({}, kAnswer);  // every later answer within kAnswer (the socket's receive timeout)
    check_job(*s);
    s->add(kCame, 1);
    const bool second = s->add(claim_key(l_.rank), 1) > 1;
    if (second)
      decide(*s,
             fmt::format("rank {} was started twice: two processes came to the rendezvous at {} "
                         "as rank {} of {}",
                         l_.rank, where_, l_.rank, l_.world));
    else
      s->add(kJoined, 1);
    std::string verdict;
    try {
      verdict = wait_verdict(*s);
    } catch (const Stopped& e) {
      decide(*s, fmt::format("rank {} was stopped by {} while meeting the others", l_.rank,
                             signal_name(e.signal)));
      throw;
    }
    if (verdict == "+" && !second) {
      s->wait({}, timeout_);  // from here on, answers within dist.timeout
      return s;
    }
    s->add(kRead, 1);
    if (l_.rank == 0) linger(*s);
    throw ConfigError(verdict == "+" ? fmt::format("rank {} of this job already met the others "
                                                   "at {}: this process is a second rank {}",
                                                   l_.rank, where_, l_.rank)
                                     : verdict.substr(1));
  }

  // Rank 0: the store's server. A port in use is named as such, never waited out.
  Store host() {
    const c10d::TCPStoreOptions o = store_options(l_.master_port, true, timeout_);
    try {
      QuietStderr quiet;
      Store s = c10::make_intrusive<c10d::TCPStore>(l_.master_addr, o);
      s->set(kJob, bytes(job_));
      return s;
    } catch (const std::exception& e) {
      const std::string what = first_line(e.what());
      if (what.find("Address already in use") == std::string::npos)
        throw ConfigError(
            fmt::format("rank 0 cannot serve the rendezvous at {} ({} set "
                        "MASTER_ADDR:MASTER_PORT): {}",
                        where_, l_.source, what));
    }
    std::string other;  // the job of another mmdflow rendezvous there, if it is one
    try {
      if (Store s = client(); s && s->check({kJob})) other = text(s->get(kJob));
    } catch (const std::exception&) {
    }
    if (!other.empty())
      throw ConfigError(
          fmt::format("MASTER_PORT {}: in use by the rendezvous of another job ({}): "
                      "give each job its own port",
                      l_.master_port, readable(other)));
    throw ConfigError(
        fmt::format("MASTER_PORT {}: port in use by another program: choose a free "
                    "port for MASTER_PORT",
                    l_.master_port));
  }

  // A client that answered within kTry; null (with why_) when none did.
  Store client() {
    const c10d::TCPStoreOptions o = store_options(l_.master_port, false, kTry);
    Store s;
    try {
      QuietStderr quiet;
      s = c10::make_intrusive<c10d::TCPStore>(l_.master_addr, o);
    } catch (const std::exception& e) {
      const std::string what = first_line(e.what());
      silent_ = false;
      why_ =
          what.find("timed out") != std::string::npos || what.find("refused") != std::string::npos
              ? "nothing listens there (rank 0, which holds it, did not come)"
              : what;
      return {};
    }
    try {
      s->wait({}, kTry);  // a store answers at once
    } catch (const std::exception&) {
      silent_ = true;
      return {};
    }
    s->setTimeout(timeout_);
    return s;
  }

  // The other ranks: rank 0's store, tried until the deadline.
  Store reach() {
    for (;;) {
      poll();
      if (Store s = client()) return s;
      if (clock_type::now() >= deadline_) break;
      std::this_thread::sleep_for(kPoll);
    }
    if (silent_)
      throw ConfigError(
          fmt::format("the rendezvous at {} does not answer: port in use by another "
                      "program (it accepts connections but never answers); choose "
                      "a free port for MASTER_PORT",
                      where_));
    throw ConfigError(
        fmt::format("cannot reach the rendezvous at {} within dist.timeout = {} s ({} "
                    "set MASTER_ADDR:MASTER_PORT): {}",
                    where_, timeout_s_, l_.source, why_));
  }

  // A process of another job leaves before anything of it is in the store but its note.
  void check_job(c10d::TCPStore& s) {
    while (!s.check({kJob})) {  // rank 0 writes it right after it listens
      poll();
      if (clock_type::now() >= deadline_)
        throw ConfigError(
            fmt::format("the rendezvous at {} is not mmdflow's: port in use by "
                        "another program; choose a free port for MASTER_PORT",
                        where_));
      std::this_thread::sleep_for(kPoll);
    }
    const std::string theirs = text(s.get(kJob));
    if (theirs == job_) return;
    s.set(stranger_key(l_.rank), bytes(job_));  // for rank 0's message, should this rank not come
    throw ConfigError(
        fmt::format("the rendezvous at {} belongs to another job ({}), not this one "
                    "({}): give each job its own MASTER_PORT, and every rank of a "
                    "job the same command and folder",
                    where_, readable(theirs), readable(job_)));
  }

  // The verdict, once.
  void decide(c10d::TCPStore& s, const std::string& why) {
    try {
      s.compareSet(kMeetVerdict, {}, bytes("-" + why));
    } catch (const std::exception&) {
    }
  }

  std::string wait_verdict(c10d::TCPStore& s) {
    for (;;) {
      poll();
      if (s.check({kMeetVerdict})) return text(s.get(kMeetVerdict));
      if (l_.rank == 0 && s.add(kJoined, 0) >= l_.world)
        s.compareSet(kMeetVerdict, {}, bytes("+"));
      else if (clock_type::now() >= deadline_)
        decide(s, missing(s));
      else
        std::this_thread::sleep_for(kPoll);
    }
  }

  // "rank 2 of 3 did not come ..." (five ranks named at most), with a note when a process of
  // another job came in place of one.
  std::string missing(c10d::TCPStore& s) {
    const int64_t joined = s.add(kJoined, 0);
    std::vector<int> gone;
    std::string note;
    for (int r = 0; r < l_.world && gone.size() < 5; ++r) {
      if (s.check({claim_key(r)})) continue;
      gone.push_back(r);
      if (note.empty() && s.check({stranger_key(r)}))
        note = fmt::format(" (a process of another job, {}, came as rank {} and was turned away)",
                           readable(text(s.get(stranger_key(r)))), r);
    }
    const int64_t more = l_.world - joined - int64_t(gone.size());
    return fmt::format(
        "rank{} {}{} of {} did not come to the rendezvous at {} within "
        "dist.timeout = {} s{}",
        gone.size() > 1 ? "s" : "", fmt::join(gone, ", "),
        more > 0 ? fmt::format(" and {} more", more) : "", l_.world, where_, timeout_s_, note);
  }

  // Rank 0 keeps the store up until every process that came has read the failed verdict.
  void linger(c10d::TCPStore& s) {
    const auto until = clock_type::now() + std::chrono::seconds(3);
    try {
      while (s.add(kRead, 0) < s.add(kCame, 0) && clock_type::now() < until)
        std::this_thread::sleep_for(kPoll);
    } catch (const std::exception&) {
    }
  }

  const Launch& l_;
  double timeout_s_;
  milliseconds timeout_;
  const Meeting& meeting_;
  std::string where_, job_;
  clock_type::time_point deadline_;
  bool silent_ = false;  // the last attempt connected, but nothing answered
  std::string why_;      // the last attempt's failure to connect
};

using Allreduce = std::function<void(std::vector<at::Tensor>&)>;

// The process group's allreduce, waiting for its end. Held as a function: LibTorch 1.13's
// groups derive from c10d::ProcessGroup, later ones' from c10d::Backend.
Allreduce process_group(const Store& store, Backend backend, const Launch& l,
                        milliseconds timeout) {
  if (backend == Backend::Gloo) {
#ifdef USE_C10D_GLOO
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (l.master_addr == "127.0.0.1" || l.master_addr == "localhost")
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else  // this machine's name
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, l.rank, l.world, opts);
    return [pg, timeout](std::vector<at::Tensor>& ts) { pg->allreduce(ts)->wait(timeout); };
#else
    throw ConfigError("dist.backend: this build has no Gloo (Debian: libgloo-dev)");
#endif
  }
#ifdef USE_C10D_NCCL
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, l.rank, l.world, opts);
  return [pg, timeout](std::vector<at::Tensor>& ts) { pg->allreduce(ts)->wait(timeout); };
#else
  throw ConfigError("dist.backend: nccl needs a CUDA build with NCCL (-DMMDFLOW_CUDA=ON)");
#endif
}

// The backend's mesh among ranks that all met, built on a thread of its own so that the stop
// function is obeyed meanwhile and a rank lost in between ends the wait by the rendezvous's
// deadline (at least kMesh from now); the thread is left behind then, as the process ends.
Allreduce mesh(const Store& store, Backend backend, const Launch& l, milliseconds timeout,
               const Rendezvous& meeting) {
  auto made = std::make_shared<std::promise<Allreduce>>();
  std::future<Allreduce> ready = made->get_future();
  std::thread([made, store, backend, l, timeout] {
    try {
      made->set_value(process_group(store, backend, l, timeout));
    } catch (...) {
      made->set_exception(std::current_exception());
    }
  }).detach();
  const auto until = std::max(meeting.deadline(), clock_type::now() + kMesh);
  QuietStderr quiet;
  while (ready.wait_for(kPoll) != std::future_status::ready) {
    meeting.poll();
    if (clock_type::now() >= until)
      throw ConfigError(fmt::format(
          "the {} process group did not connect: every rank met at {}:{}, but one was lost since",
          name_of(backend), l.master_addr, l.master_port));
  }
  try {
    return ready.get();
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("the {} process group could not start: {}", name_of(backend),
                                  first_line(e.what())));
  }
}

// Every rank adds 1 to its counter in the store twice a second from a thread of its own (with its
// own connection): a rank whose counter stands still is gone, whatever the clocks of the machines.
constexpr milliseconds kBeat{500};
constexpr milliseconds kProbe{3000};  // a counter still this long: the rank is lost
constexpr milliseconds kLinger{
    10000};  // rank 0 keeps the store up this long for the others' probes

std::string beat_key(int r) { return fmt::format("mmdflow/beat/{}", r); }
std::string left_key(int r) { return fmt::format("mmdflow/left/{}", r); }
constexpr const char* kVerdict = "mmdflow/verdict";  // the first prober's finding, for all

class C10dComm : public Comm {
 public:
  C10dComm(const Launch& l, double timeout_s, Backend backend, c10::Device device,
           const Meeting& meeting)
      : Comm(l.rank, l.world, l.local_rank), launch_(l), timeout_(int64_t(timeout_s * 1000)) {
    Rendezvous rendezvous(l, timeout_s, meeting);
    store_ = rendezvous.meet();
    if (backend == Backend::Auto) backend = device.is_cuda() ? Backend::Nccl : Backend::Gloo;
    // NCCL sums CUDA tensors only: CPU tensors (the gathers of small vectors) go through the GPU.
    if (backend == Backend::Nccl) staging_ = device;
    allreduce_ = mesh(store_, backend, l, timeout_, rendezvous);
    heartbeat_ = std::thread([this] { beat(); });
  }

  ~C10dComm() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    heartbeat_.join();
  }

  void sum(at::Tensor& t) override {
    TORCH_CHECK(t.is_contiguous(), "Comm::sum needs a contiguous tensor");
    const auto t0 = clock_type::now();
    std::vector<at::Tensor> ts{staging_ && t.is_cpu() ? t.to(*staging_) : t};
    try {
      allreduce_(ts);
      if (ts[0].data_ptr() != t.data_ptr()) t.copy_(ts[0]);
    } catch (const std::exception& e) {
      lost(first_line(e.what()));
    }
    seconds_ += std::chrono::duration<double>(clock_type::now() - t0).count();
  }

  std::string from_rank0(const std::string& key, const std::string& text) override {
    const std::string k = "mmdflow/share/" + key;
    try {
      if (rank() == 0) {
        store_->set(k, std::vector<uint8_t>(text.begin(), text.end()));
        return text;
      }
      const std::vector<uint8_t> v = store_->get(k);
      return std::string(v.begin(), v.end());
    } catch (const std::exception& e) {
      lost(first_line(e.what()));
    }
  }

 private:
  void beat() {
    c10::intrusive_ptr<c10d::TCPStore> own;
    try {
      const c10d::TCPStoreOptions o = store_options(launch_.master_port, false, timeout_);
      QuietStderr quiet;
      own = c10::make_intrusive<c10d::TCPStore>(launch_.master_addr, o);
    } catch (const std::exception&) {
      return;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      try {
        own->add(beat_key(rank()), 1);
        // Another rank found one lost: this one leaves too, even if blocked in a sum on a rank
        // that lives but stopped sending when it found the loss.
        if (!failing_ && handler_ && own->check({kVerdict})) {
          const std::vector<uint8_t> v = own->get(kVerdict);
          own->set(left_key(rank()), std::vector<uint8_t>{1});
          handler_(std::string(v.begin(), v.end()));
        }
      } catch (const std::exception&) {
        return;  // the store is gone: rank 0 is
      }
      wake_.wait_for(lock, kBeat, [this] { return stop_; });
    }
  }

  // The ranks whose heartbeat stands still and that did not leave on their own; {0} when the
  // store itself (in rank 0) is gone.
  std::vector<int> probe() {
    try {
      std::vector<int64_t> before(world());
      for (int r = 0; r < world(); ++r) before[r] = store_->add(beat_key(r), 0);
      std::this_thread::sleep_for(kProbe);
      std::vector<int> lost;
      for (int r = 0; r < world(); ++r)
        if (r != rank() && store_->add(beat_key(r), 0) == before[r] &&
            !store_->check({left_key(r)}))
          lost.push_back(r);
      return lost;
    } catch (const std::exception&) {
      return {0};
    }
  }

  [[noreturn]] void lost(const std::string& what) {
    failing_ = true;
    const std::vector<int> gone = probe();
    const std::string verdict =
        gone.empty()
            ? fmt::format("a collective of the {} ranks failed: {}", world(), what)
            : fmt::format("lost rank {} of {}{}: {}", fmt::join(gone, ", "), world(),
                          gone == std::vector<int>{0} ? " (it holds the rendezvous)" : "", what);
    try {
      if (!gone.empty() && !store_->check({kVerdict}))
        store_->set(kVerdict, std::vector<uint8_t>(verdict.begin(), verdict.end()));
      store_->set(left_key(rank()), std::vector<uint8_t>{1});
      if (rank() == 0) {  // the store lives here: keep it up until the others have probed
        const auto until = clock_type::now() + kLinger;
        for (int r = 1; r < world() && clock_type::now() < until; ++r)
          while (std::find(gone.begin(), gone.end(), r) == gone.end() &&
                 !store_->check({left_key(r)}) && clock_type::now() < until)
            std::this_thread::sleep_for(milliseconds(50));
      }
    } catch (const std::exception&) {
    }
    throw PeerLost(verdict);
  }

  void on_peer_lost(std::function<void(const std::string&)> handler) override {
    std::lock_guard<std::mutex> lock(mutex_);
    handler_ = std::move(handler);
  }

  Launch launch_;
  milliseconds timeout_;
  c10::intrusive_ptr<c10d::TCPStore> store_;
  Allreduce allreduce_;
  std::optional<c10::Device> staging_;  // NCCL: where CPU tensors are summed
  std::thread heartbeat_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::atomic<bool> failing_{false};  // this rank is probing a failure of its own
  std::function<void(const std::string&)> handler_;
};

}  // namespace

std::unique_ptr<Comm> single_process() { return std::make_unique<Single>(); }

std::unique_ptr<Comm> connect(const Launch& launch, double timeout_s, Backend backend,
                              c10::Device device, const Meeting& meeting) {
  TORCH_CHECK(launch.world > 1, "connect() is for world sizes above 1");
  return std::make_unique<C10dComm>(launch, timeout_s, backend, device, meeting);
}

}  // namespace mmdflow
