// The avx2 path: AVX2 and FMA, 256-bit product tiles and loops (see kernels_impl.h).
#if defined(__x86_64__) || defined(__i386__)
#define MMDFLOW_ISA_NS avx2
#define MMDFLOW_ISA_AVX2 1
#define MMDFLOW_ISA_TARGET "avx2,fma"
#include "src/kernels/kernels_impl.h"
#endif
