// The avx512 path: AVX-512F, 512-bit product tiles and loops (see kernels_impl.h).
#if defined(__x86_64__) || defined(__i386__)
#define MMDFLOW_ISA_NS avx512
#define MMDFLOW_ISA_AVX512 1
#if defined(__clang__)
#define MMDFLOW_ISA_TARGET "avx512f,avx2,fma"
#else
#define MMDFLOW_ISA_TARGET "avx512f,avx2,fma,prefer-vector-width=512"
#endif
#include "src/kernels/kernels_impl.h"
#endif
