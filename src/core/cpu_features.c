#include "core/cpu_features.h"

#include <stdlib.h>
#include <string.h>

tuna_cpu_features tuna_cpu_detect(void) {
    tuna_cpu_features f;
    memset(&f, 0, sizeof f);
#if defined(__x86_64__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = 1; /* part of x86-64-v3 */
    f.avx512f = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    const char *force = getenv("TUNA_ISA");
    if (force && strcmp(force, "avx2") == 0) f.avx512f = 0;
    return f;
}

const char *tuna_cpu_describe(const tuna_cpu_features *f) {
    if (f->avx512f) return "avx2-fma, avx512 GEMM"; /* the GEMV is AVX2 on every CPU (memory-bound) */
    if (f->avx2 && f->fma) return "avx2-fma";
    return "generic";
}
