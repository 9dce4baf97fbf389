// Devices and threads.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace mmdflow {

// The device itself; throws ConfigError when this build or machine has no such device.
c10::Device resolve_device(c10::Device dev);
// The cores this process may run on (its CPU affinity).
int64_t cores_available();
// Sets ATen's intra-op threads (0 or more than cores_available(): one per core) and
// single-threaded BLAS calls, as the fused kernels parallelise over particle blocks themselves;
// returns the count in use. Throws std::runtime_error when the threads cannot be started.
int64_t set_threads(int64_t n);
// OpenMP's threads (libgomp, behind ATen's parallel_for) wait for work passively
// (OMP_WAIT_POLICY=passive: asleep in the kernel) unless the environment sets OMP_WAIT_POLICY or
// GOMP_SPINCOUNT. By default they spin about 3 ms before sleeping, and on cores shared with other
// processes a step then waits for a descheduled thread while its peers spin: the paper step took
// 60 times as long at 2 threads as at 1 with two busy processes on 2 cores (docs/performance.md).
// libgomp reads the variables once, in its initialiser, before main: the executable's preinit
// function (src/cli/main.cpp), which runs before any library's initialiser, calls
// reexec_to_wait_passively(), which executes the program again with the variable added and a
// marker, and main calls settle_wait_policy() first, which removes both from the environment (the
// program's children choose for themselves). Only async-signal-safe calls in the first: libc is
// not initialised yet. Each execution costs about 0.15 s of loading; a command line asking for
// one thread (`--threads 1`, `--set threads=1`) skips it.
void reexec_to_wait_passively(int argc, char** argv, char** envp);
void settle_wait_policy();
// How OpenMP's threads wait, for reports: "passive (mmdflow's default)", or the environment's
// OMP_WAIT_POLICY and GOMP_SPINCOUNT ("libgomp's default" where neither is set).
std::string wait_policy();

// Threads of OpenBLAS's own pool (where OpenBLAS is the BLAS in use), e.g. for a reference
// matrix product.
void set_blas_threads(int64_t n);

}  // namespace mmdflow
