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

// Silences stderr while alive: c10d's socket code logs its retries there, and a failed
// rendezvous gets one line of its own instead.
class QuietStderr {
 public:
  QuietStderr() : saved_(::dup(2)) {
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, 2), ::close(null);
  }
  ~QuietStderr() {
    if (saved_ >= 0) ::dup2(saved_, 2), ::close(saved_);
  }

 private:
  int saved_;
};

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
  C10dComm(const Launch& l, double timeout_s, Backend backend, c10::Device device)
      : Comm(l.rank, l.world, l.local_rank), launch_(l), timeout_(int64_t(timeout_s * 1000)) {
    const std::string where = fmt::format("{}:{}", l.master_addr, l.master_port);
    c10d::TCPStoreOptions o;
    o.port = uint16_t(l.master_port);
    o.isServer = l.rank == 0;
    o.numWorkers = size_t(l.world);
    o.waitWorkers = true;
    o.timeout = timeout_;
    try {
      QuietStderr quiet;
      store_ = c10::make_intrusive<c10d::TCPStore>(l.master_addr, o);
    } catch (const std::exception& e) {
      throw ConfigError(
          fmt::format("{} {} within dist.timeout = {} s ({} set MASTER_ADDR:MASTER_PORT): {}",
                      l.rank == 0 ? "not every rank joined the rendezvous at"
                                  : "cannot reach the rendezvous at",
                      where, timeout_s, l.source, first_line(e.what())));
    }
    if (backend == Backend::Auto) backend = device.is_cuda() ? Backend::Nccl : Backend::Gloo;
    // NCCL sums CUDA tensors only: CPU tensors (the gathers of small vectors) go through the GPU.
    if (backend == Backend::Nccl) staging_ = device;
    try {
      QuietStderr quiet;
      allreduce_ = process_group(backend, l);
    } catch (const ConfigError&) {
      throw;
    } catch (const std::exception& e) {
      throw ConfigError(fmt::format("the {} process group could not start: {}", name_of(backend),
                                    first_line(e.what())));
    }
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
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

  // The process group's allreduce, waiting for its end. Held as a function: LibTorch 1.13's
  // groups derive from c10d::ProcessGroup, later ones' from c10d::Backend.
  std::function<void(std::vector<at::Tensor>&)> process_group(Backend backend, const Launch& l) {
    if (backend == Backend::Gloo) {
#ifdef USE_C10D_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout_);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (l.master_addr == "127.0.0.1" || l.master_addr == "localhost")
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else  // this machine's name
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, l.rank, l.world, opts);
      return [pg, this](std::vector<at::Tensor>& ts) { pg->allreduce(ts)->wait(timeout_); };
#else
      throw ConfigError("dist.backend: this build has no Gloo (Debian: libgloo-dev)");
#endif
    }
#ifdef USE_C10D_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout_;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, l.rank, l.world, opts);
    return [pg, this](std::vector<at::Tensor>& ts) { pg->allreduce(ts)->wait(timeout_); };
#else
    throw ConfigError("dist.backend: nccl needs a CUDA build with NCCL (-DMMDFLOW_CUDA=ON)");
#endif
  }

  void beat() {
    c10::intrusive_ptr<c10d::TCPStore> own;
    try {
      c10d::TCPStoreOptions o;
      o.port = uint16_t(launch_.master_port);
      o.isServer = false;
      o.waitWorkers = false;
      o.timeout = timeout_;
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
  std::function<void(std::vector<at::Tensor>&)> allreduce_;
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
                              c10::Device device) {
  TORCH_CHECK(launch.world > 1, "connect() is for world sizes above 1");
  return std::make_unique<C10dComm>(launch, timeout_s, backend, device);
}

}  // namespace mmdflow
