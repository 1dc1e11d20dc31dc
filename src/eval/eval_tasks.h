/* Task files of `tuna eval` (docs/eval.md): JSON lines, one task each.
 *
 *   {"task": "understand", "id", "image", "question", "answer", "type"}
 *   {"task": "generate", "id", "prompt", "category", "expect": {...}, "image"?}
 *   {"task": "edit", "id", "image", "instruction", "kind", "expect": {...}, "target"?}
 *   {"task": "reconstruct", "id", "image"}
 *   {"task": "reference", "id", "image"}        (real images: the FD's other side)
 *
 * expect: {"objects": [{"shape", "colour", "x"?, "y"?}...], "relation": [rel, a, b]?,
 *          "text"?, "text_colour"?, "class"?, "colour"?}
 * "image"/"target" paths are relative to the task file's directory. Blank lines
 * are skipped; anything else that is not a valid task is an error naming its line. */
#ifndef TUNA_EVAL_EVAL_TASKS_H
#define TUNA_EVAL_EVAL_TASKS_H

#include "eval/eval_judge.h"

typedef enum {
    TUNA_TASK_UNDERSTAND = 0,
    TUNA_TASK_GENERATE,
    TUNA_TASK_EDIT,
    TUNA_TASK_RECONSTRUCT,
    TUNA_TASK_REFERENCE,
    TUNA_TASK_KINDS
} tuna_task_kind;

extern const char *const tuna_task_kind_names[TUNA_TASK_KINDS];

typedef struct {
    tuna_task_kind kind;
    int line;                 /* 1-based line in the file */
    char *id;                 /* owned; "line N" when absent */
    char *image;              /* owned, resolved path (or NULL) */
    char *target;             /* owned, resolved path (or NULL): edit ground truth */
    char *text;               /* owned: question / prompt / instruction (or NULL) */
    char *answer;             /* owned (understand) */
    char *group;              /* owned: understand "type", generate "category", edit "kind" */
    tuna_expect expect;
    int has_expect;
} tuna_eval_task;

typedef struct {
    tuna_eval_task *tasks;
    int count;
    char **bad_lines;  /* lenient loading: one message per line that is not a valid task (owned) */
    int bad_count;
} tuna_eval_tasks;

/* Parse JSONL text; base_dir resolves relative paths (NULL: as given). On error
 * *out is empty and err names the line. */
tuna_status tuna_eval_tasks_parse(const char *text, size_t len, const char *base_dir, tuna_eval_tasks *out,
                                  tuna_error *err);
/* Read and parse a task file (at most 256 MB). */
tuna_status tuna_eval_tasks_load(const char *path, tuna_eval_tasks *out, tuna_error *err);
/* The same, but a line that is not a valid task is recorded in bad_lines and
 * skipped: the run goes on with the others. Fails on I/O, memory, or a file
 * with no valid task. */
tuna_status tuna_eval_tasks_load_lenient(const char *path, tuna_eval_tasks *out, tuna_error *err);
void tuna_eval_tasks_free(tuna_eval_tasks *t);

/* Keep only the tasks whose kind bit (1 << kind) is in kinds (reference tasks are kept
 * with generate), and at most max_per_group (> 0) of each (kind, group), in file order. */
void tuna_eval_tasks_filter(tuna_eval_tasks *t, unsigned kinds, int max_per_group);

#endif
