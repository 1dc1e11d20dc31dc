/* Run-time CPU feature detection, so one binary built for x86-64-v3 (AVX2 +
 * FMA) uses its AVX-512 kernels (the tiled 16-bit GEMM, ops/cpu/matmul_avx512.c)
 * only where the CPU has AVX-512 F/BW/VL/DQ. No kernel uses AVX-512-BF16
 * (vdpbf16ps would round the f32 activations to bf16; see matmul_avx512.c).
 * TUNA_ISA=avx2 in the environment forces the AVX2 path (for testing). */
#ifndef TUNA_CORE_CPU_FEATURES_H
#define TUNA_CORE_CPU_FEATURES_H

typedef struct {
    int avx2;
    int fma;
    int f16c;
    int avx512f;     /* with BW, VL and DQ */
} tuna_cpu_features;

/* Reads cpuid (once per call; cheap). */
tuna_cpu_features tuna_cpu_detect(void);
const char *tuna_cpu_describe(const tuna_cpu_features *f); /* static string */

#endif
