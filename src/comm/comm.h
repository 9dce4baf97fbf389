// The processes of a sharded run and all they exchange: sums of tensors (a c10d allreduce: Gloo on
// CPU, NCCL on CUDA) and short texts through the rendezvous store (c10d's TCPStore hosted by rank
// 0). A single process has a Comm too, whose calls are local, so callers never branch on it.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "src/base/errors.h"
#include "src/comm/backend.h"
#include "src/comm/launch.h"

namespace mmdflow {

class Comm {
 public:
  virtual ~Comm() = default;
  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return local_rank_; }  // on this machine: picks cuda:LOCAL_RANK

  // t <- the sum over ranks of t, in place; every rank passes the same shape and dtype. Throws
  // PeerLost, naming the lost rank, when a process is gone or the sum times out.
  virtual void sum(at::Tensor& t) = 0;
  // Every rank's `values` (of one length on every rank), by rank: one sum.
  std::vector<std::vector<double>> gather(const std::vector<double>& values);
  // Rank 0's `text` (the others pass anything), on every rank.
  virtual std::string from_rank0(const std::string& key, const std::string& text) = 0;
  // Seconds spent in sum() so far, waiting for slower ranks included.
  double seconds() const { return seconds_; }
  // Called (from another thread) when another rank found a rank lost, with its verdict: this
  // rank may be blocked in a sum waiting for a rank that is alive but stopped, so it must end
  // itself. Without one, the verdict comes as PeerLost from its next sum.
  virtual void on_peer_lost(std::function<void(const std::string& verdict)> handler) {}

 protected:
  Comm(int rank, int world, int local_rank) : rank_(rank), world_(world), local_rank_(local_rank) {}
  double seconds_ = 0;

 private:
  int rank_, world_, local_rank_;
};

// Runs `act` (n numbers back) on every rank and gathers its numbers by rank: one sum. When it
// threw on any rank, every rank throws: those where it did their own exception, the others what
// failed(r, code) throws for the first such rank r (code: its exit code, src/base/errors.h).
std::vector<std::vector<double>> gather_after(Comm& comm, size_t n,
                                              const std::function<std::vector<double>()>& act,
                                              const std::function<void(int, int)>& failed);

// One process: sums are the identity.
std::unique_ptr<Comm> single_process();

// How the processes of one job meet at MASTER_ADDR:MASTER_PORT.
struct Meeting {
  // What every rank of this job says of it (its command and run folder); connect() adds the world
  // size and the launcher's job id. A process whose job differs from rank 0's is turned away
  // (exit 2) before anything of it enters the store: another job on the port is never stalled.
  std::string job;
  // Polled while waiting: a non-zero value (a signal number) ends the wait with Stopped.
  std::function<int()> stop;
};

// connect() was stopped by `signal` (Meeting::stop); nothing was shared.
struct Stopped : std::runtime_error {
  explicit Stopped(int signal) : std::runtime_error(signal_name(signal)), signal(signal) {}
  int signal;
};

// The processes of `launch` (world > 1) meet at MASTER_ADDR:MASTER_PORT: rank 0 hosts the store,
// every rank checks its job against rank 0's and registers its rank; rank 0 declares the meeting
// whole once every rank has come. Every process returns or throws within timeout_s and a few
// seconds, whatever goes wrong. Throws ConfigError (exit 2) with one line naming the cause: the
// port in use by another program or by another job's rendezvous, rank 0 unreachable, the ranks
// that did not come, a rank started twice, a backend not built in; Stopped on `meeting.stop`.
// `backend` Auto is NCCL for a CUDA device, Gloo otherwise.
std::unique_ptr<Comm> connect(const Launch& launch, double timeout_s, Backend backend,
                              c10::Device device, const Meeting& meeting = {});

}  // namespace mmdflow
