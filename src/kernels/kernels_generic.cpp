// The generic path: the baseline instruction set; products on BLAS (see kernels_impl.h).
#define MMDFLOW_ISA_NS generic
#include "src/kernels/kernels_impl.h"
