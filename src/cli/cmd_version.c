#include "cli/commands.h"
#include "core/cpu_features.h"
#include "core/threads.h"

#include <stdio.h>

#define TUNA_VERSION "0.1.0"

int cli_cmd_version(int argc, char **argv) {
    if (argc > 1) {
        fprintf(stderr, "tuna version: unexpected argument '%s' (usage: tuna version)\n", argv[1]);
        return 2;
    }
    tuna_cpu_features cpu = tuna_cpu_detect();
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    printf("tuna %s\ncpu kernels: %s\nthreads: %d\n", TUNA_VERSION, tuna_cpu_describe(&cpu), pool.count);
    return 0;
}
