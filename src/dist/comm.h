// The processes of a sharded run and all they exchange: sums of tensors (a c10d allreduce: Gloo on
// CPU, NCCL on CUDA) and short texts through the rendezvous store (c10d's TCPStore hosted by rank
// 0). A single process has a Comm too, whose calls are local, so callers never branch on it.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <vector>

#include "src/dist/backend.h"
#include "src/dist/launch.h"

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

 protected:
  Comm(int rank, int world, int local_rank) : rank_(rank), world_(world), local_rank_(local_rank) {}
  double seconds_ = 0;

 private:
  int rank_, world_, local_rank_;
};

// One process: sums are the identity.
std::unique_ptr<Comm> single_process();

// The processes of `launch` (world > 1) meet at MASTER_ADDR:MASTER_PORT within timeout_s;
// `backend` Auto is NCCL for a CUDA device, Gloo otherwise. Throws ConfigError (exit 2) when the
// rendezvous cannot be reached or served, or the backend is not built in.
std::unique_ptr<Comm> connect(const Launch& launch, double timeout_s, Backend backend,
                              c10::Device device);

}  // namespace mmdflow
