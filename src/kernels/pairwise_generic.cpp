// The generic path's pair loops: the baseline instruction set (see pairwise_impl.h).
#define MMDFLOW_ISA_NS generic
#include "src/kernels/pairwise_impl.h"
