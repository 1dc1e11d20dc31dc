/* libFuzzer: `tuna eval` task files. Any bytes either parse into tasks whose
 * expectations are in range, or fail with a message; never a crash or leak. */
#include "eval/eval_tasks.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    tuna_eval_tasks t;
    tuna_error err = {0};
    if (tuna_eval_tasks_parse((const char *)data, size, "base", &t, &err) != TUNA_OK) {
        if (!err.message[0]) abort(); /* a failure always says why */
        return 0;
    }
    for (int i = 0; i < t.count; i++) {
        const tuna_expect *e = &t.tasks[i].expect;
        if (!t.tasks[i].id || !t.tasks[i].group || e->object_count < 0 || e->object_count > TUNA_JUDGE_MAX_OBJECTS)
            abort();
        if (e->relation >= 0 && (e->rel_a >= e->object_count || e->rel_b >= e->object_count)) abort();
    }
    tuna_eval_tasks_free(&t);
    return 0;
}
