/* Run-time CPU feature detection, so one binary built for x86-64-v3 (AVX2 +
 * FMA) uses AVX-512 / AVX-512-BF16 kernels only where the CPU has them.
 * TUNA_ISA=avx2 in the environment forces the AVX2 path (for testing). */
#ifndef TUNA_CORE_CPU_FEATURES_H
#define TUNA_CORE_CPU_FEATURES_H

typedef struct {
    int avx2;
    int fma;
    int f16c;
    int avx512f;     /* with BW, VL and DQ */
    int avx512bf16;
} tuna_cpu_features;

/* Reads cpuid (once per call; cheap). */
tuna_cpu_features tuna_cpu_detect(void);
const char *tuna_cpu_describe(const tuna_cpu_features *f); /* static string */

#endif
