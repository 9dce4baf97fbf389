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
// returns the count in use. With 0 (the default) the count then follows the machine's load
// (follow_load). Throws std::runtime_error when the threads cannot be started.
int64_t set_threads(int64_t n);
// The default thread count follows the load: at a step boundary, at most every 50 ms, the
// runnable threads of other processes are counted (/proc/stat's procs_running less this process's
// running threads) and the next steps take the cores they leave, at least one, at most the count
// set (after two readings in a row). OpenMP's threads spin at each parallel
// region's end (libgomp's default, about 3 ms): on cores shared with other processes a step then
// waits for a descheduled thread while its peers spin, and the paper step took up to 60 times as
// long at 2 threads as at 1 (docs/performance.md). Results do not depend on the thread count.
// follow_load_with(most) follows with up to `most` threads (most < 2: not at all).
void follow_load_with(int64_t most);
int64_t followed_most();     // the `most` being followed with (< 2: none)
int64_t followed_threads();  // the count the load asked for last
void follow_load();
// How OpenMP's threads wait, for reports: the environment's OMP_WAIT_POLICY and GOMP_SPINCOUNT,
// or libgomp's default.
std::string wait_policy();

// Keeps 64 MiB free on top of glibc's heap (M_TOP_PAD) instead of its 128 KiB: a step's ATen
// temporaries of a few MB (Sobolev descent's Jacobian Gram: [N, H, B] each) were given back to
// the system as each step freed them and faulted in again at the next, about 10 000 page faults
// an epoch at the paper's size and 4x its time. Called once, at the start of a command.
void keep_heap_pad();

// Threads of OpenBLAS's own pool (where OpenBLAS is the BLAS in use), e.g. for a reference
// matrix product.
void set_blas_threads(int64_t n);

}  // namespace mmdflow
