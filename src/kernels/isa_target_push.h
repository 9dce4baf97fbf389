// Switches the code that follows to the instruction set of the path being compiled,
// MMDFLOW_ISA_TARGET (e.g. "avx2,fma"; undefined for generic), until isa_target_pop.h. Include it
// after every other header: the inline functions and templates that other translation units share
// (std::, ATen) are then emitted for the baseline instruction set wherever they are not inlined, so
// one path's copy can never stand in for another's at link time.
#ifdef MMDFLOW_ISA_TARGET
#define MMDFLOW_PRAGMA(...) _Pragma(#__VA_ARGS__)
#if defined(__clang__)
#define MMDFLOW_TARGET_PUSH(t) \
  MMDFLOW_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
MMDFLOW_TARGET_PUSH(MMDFLOW_ISA_TARGET)
#elif defined(__GNUC__)
#define MMDFLOW_TARGET_GCC(t) MMDFLOW_PRAGMA(GCC target(t))
#pragma GCC push_options
MMDFLOW_TARGET_GCC(MMDFLOW_ISA_TARGET)
#endif
#endif
