// The generic path's loop: SSE2, a multiply and an add, no FMA (see bench_fma_impl.h).
#define MMDFLOW_ISA_NS generic
#define MMDFLOW_FMA_LANES 4
#include "src/cli/bench_fma_impl.h"
