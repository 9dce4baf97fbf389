// Devices and threads.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace mmdflow {

// The device itself; throws ConfigError when this build or machine has no such device.
c10::Device resolve_device(c10::Device dev);
// Sets ATen's intra-op threads (0: one per core) and single-threaded BLAS calls, as the fused
// kernels parallelise over particle blocks themselves; returns the count in use.
int64_t set_threads(int64_t n);
// Threads of OpenBLAS's own pool (where OpenBLAS is the BLAS in use), e.g. for a reference
// matrix product.
void set_blas_threads(int64_t n);

}  // namespace mmdflow
