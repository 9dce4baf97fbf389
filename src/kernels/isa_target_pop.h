// Ends isa_target_push.h's switch.
#ifdef MMDFLOW_ISA_TARGET
#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
#endif
