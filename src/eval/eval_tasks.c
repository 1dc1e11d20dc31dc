/* Task-file parser of `tuna eval`. See eval_tasks.h. */
#include "eval/eval_tasks.h"
#include "core/mapped_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tuna_task_kind_names[TUNA_TASK_KINDS] = {"understand", "generate", "edit", "reconstruct",
                                                            "reference"};

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *join_path(const char *base, const char *path) {
    if (!base || !*base || path[0] == '/') return dup_string(path);
    size_t n = strlen(base) + strlen(path) + 2;
    char *d = malloc(n);
    if (d) snprintf(d, n, "%s/%s", base, path);
    return d;
}

/* A string member: *out NULL when absent; an error when present but not a string. */
static tuna_status get_string(const cJSON *o, const char *key, int required, const char **out, int line,
                              tuna_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v) {
        if (required) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: missing \"%s\"", line, key);
        return TUNA_OK;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: \"%s\" must be a string", line, key);
    *out = v->valuestring;
    return TUNA_OK;
}

static tuna_status parse_expect_object(const cJSON *o, tuna_expect_object *x, int line, tuna_error *err) {
    const char *shape, *colour;
    if (!cJSON_IsObject(o)) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: expect.objects[] must be objects", line);
    TUNA_TRY(get_string(o, "shape", 1, &shape, line, err));
    TUNA_TRY(get_string(o, "colour", 1, &colour, line, err));
    x->shape = tuna_judge_shape_index(shape);
    x->colour = tuna_judge_colour_index(colour);
    if (x->shape < 0) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: unknown shape \"%s\"", line, shape);
    if (x->colour < 0) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: unknown colour \"%s\"", line, colour);
    const cJSON *px = cJSON_GetObjectItemCaseSensitive(o, "x"), *py = cJSON_GetObjectItemCaseSensitive(o, "y");
    if (px || py) {
        if (!cJSON_IsNumber(px) || !cJSON_IsNumber(py))
            return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: object position wants numbers x and y", line);
        x->x = (float)px->valuedouble, x->y = (float)py->valuedouble, x->has_position = 1;
    }
    return TUNA_OK;
}

static tuna_status parse_expect(const cJSON *e, tuna_expect *x, int line, tuna_error *err) {
    tuna_expect_init(x);
    if (!cJSON_IsObject(e)) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: \"expect\" must be an object", line);
    const cJSON *objs = cJSON_GetObjectItemCaseSensitive(e, "objects");
    if (objs) {
        if (!cJSON_IsArray(objs)) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: expect.objects must be a list", line);
        const cJSON *o;
        cJSON_ArrayForEach(o, objs) {
            if (x->object_count == TUNA_JUDGE_MAX_OBJECTS)
                return tuna_fail(err, TUNA_ERR_LIMIT, "line %d: more than %d objects", line, TUNA_JUDGE_MAX_OBJECTS);
            TUNA_TRY(parse_expect_object(o, &x->objects[x->object_count++], line, err));
        }
    }
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(e, "relation");
    if (rel) {
        const cJSON *r0 = cJSON_GetArrayItem(rel, 0), *r1 = cJSON_GetArrayItem(rel, 1), *r2 = cJSON_GetArrayItem(rel, 2);
        if (!cJSON_IsArray(rel) || cJSON_GetArraySize(rel) != 3 || !cJSON_IsString(r0) || !cJSON_IsNumber(r1) ||
            !cJSON_IsNumber(r2))
            return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: expect.relation wants [\"left\"|..., a, b]", line);
        x->relation = tuna_judge_relation_index(r0->valuestring);
        x->rel_a = r1->valueint, x->rel_b = r2->valueint;
        if (x->relation < 0 || x->rel_a < 0 || x->rel_b < 0 || x->rel_a >= x->object_count ||
            x->rel_b >= x->object_count || x->rel_a == x->rel_b)
            return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: bad expect.relation", line);
    }
    const char *text, *text_colour, *cls, *colour;
    TUNA_TRY(get_string(e, "text", 0, &text, line, err));
    TUNA_TRY(get_string(e, "text_colour", 0, &text_colour, line, err));
    TUNA_TRY(get_string(e, "class", 0, &cls, line, err));
    TUNA_TRY(get_string(e, "colour", 0, &colour, line, err));
    if (text) {
        if (!*text || strlen(text) >= sizeof x->text)
            return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: expect.text must be 1 to %zu bytes", line,
                             sizeof x->text - 1);
        strcpy(x->text, text);
    }
    if (text_colour && (x->text_colour = tuna_judge_colour_index(text_colour)) < 0)
        return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: unknown colour \"%s\"", line, text_colour);
    if (cls && (x->fashion_class = tuna_fashion_class_index(cls)) < 0)
        return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: unknown class \"%s\"", line, cls);
    if (colour && (x->colour = tuna_judge_colour_index(colour)) < 0)
        return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: unknown colour \"%s\"", line, colour);
    if (!x->object_count && !text && !cls)
        return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: expect names no objects, text or class", line);
    return TUNA_OK;
}

static void task_free(tuna_eval_task *t) {
    free(t->id), free(t->image), free(t->target), free(t->text), free(t->answer), free(t->group);
    memset(t, 0, sizeof *t);
}

/* What each kind requires: its text key, whether it needs an image, an answer, an expectation. */
static const struct {
    const char *text_key, *group_key;
    int needs_image, needs_answer, needs_expect;
} kind_rules[TUNA_TASK_KINDS] = {
    [TUNA_TASK_UNDERSTAND] = {"question", "type", 1, 1, 0},
    [TUNA_TASK_GENERATE] = {"prompt", "category", 0, 0, 1},
    [TUNA_TASK_EDIT] = {"instruction", "kind", 1, 0, 1},
    [TUNA_TASK_RECONSTRUCT] = {NULL, NULL, 1, 0, 0},
    [TUNA_TASK_REFERENCE] = {NULL, NULL, 1, 0, 0},
};

static tuna_status parse_task(const cJSON *o, int line, const char *base, tuna_eval_task *t, tuna_error *err) {
    memset(t, 0, sizeof *t);
    tuna_expect_init(&t->expect); /* tasks without "expect" expect nothing */
    t->line = line;
    if (!cJSON_IsObject(o)) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: not a JSON object", line);
    const char *kind, *id, *image, *target, *text = NULL, *answer, *group = NULL;
    TUNA_TRY(get_string(o, "task", 1, &kind, line, err));
    int k = 0;
    while (k < TUNA_TASK_KINDS && strcmp(tuna_task_kind_names[k], kind) != 0) k++;
    if (k == TUNA_TASK_KINDS)
        return tuna_fail(err, TUNA_ERR_FORMAT,
                         "line %d: unknown task \"%s\" (understand, generate, edit, reconstruct, reference)", line, kind);
    t->kind = (tuna_task_kind)k;
    TUNA_TRY(get_string(o, "id", 0, &id, line, err));
    TUNA_TRY(get_string(o, "image", kind_rules[k].needs_image, &image, line, err));
    TUNA_TRY(get_string(o, "target", 0, &target, line, err));
    if (kind_rules[k].text_key) TUNA_TRY(get_string(o, kind_rules[k].text_key, 1, &text, line, err));
    TUNA_TRY(get_string(o, "answer", kind_rules[k].needs_answer, &answer, line, err));
    if (kind_rules[k].group_key) TUNA_TRY(get_string(o, kind_rules[k].group_key, 0, &group, line, err));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "expect");
    if (kind_rules[k].needs_expect && !e) return tuna_fail(err, TUNA_ERR_FORMAT, "line %d: missing \"expect\"", line);
    if (e && kind_rules[k].needs_expect) {
        TUNA_TRY(parse_expect(e, &t->expect, line, err));
        t->has_expect = 1;
    }
    char idbuf[32];
    snprintf(idbuf, sizeof idbuf, "line %d", line);
    t->id = dup_string(id ? id : idbuf);
    t->image = image ? join_path(base, image) : NULL;
    t->target = target ? join_path(base, target) : NULL;
    t->text = text ? dup_string(text) : NULL;
    t->answer = answer ? dup_string(answer) : NULL;
    t->group = dup_string(group ? group : tuna_task_kind_names[k]);
    if (!t->id || (image && !t->image) || (target && !t->target) || (text && !t->text) || (answer && !t->answer) ||
        !t->group) {
        task_free(t);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    return TUNA_OK;
}

/* One bad line: the error (strict), or a note in out->bad_lines (lenient). */
static tuna_status bad_line(tuna_eval_tasks *out, int lenient, tuna_status s, tuna_error *err) {
    if (!lenient || s == TUNA_ERR_NOMEM) return s;
    char **grown = realloc(out->bad_lines, sizeof *grown * (size_t)(out->bad_count + 1));
    char *copy = grown ? dup_string(err ? err->message : "bad line") : NULL;
    if (grown) out->bad_lines = grown;
    if (!copy) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    out->bad_lines[out->bad_count++] = copy;
    return TUNA_OK;
}

static tuna_status parse_tasks(const char *text, size_t len, const char *base_dir, int lenient, tuna_eval_tasks *out,
                               tuna_error *err) {
    memset(out, 0, sizeof *out);
    int cap = 0, line = 0;
    tuna_status s = TUNA_OK;
    size_t pos = 0;
    char *buf = NULL;
    while (pos < len && s == TUNA_OK) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;
        line++;
        const char *p = text + pos;
        pos = end + 1;
        size_t skip = 0;
        while (skip < n && (p[skip] == ' ' || p[skip] == '\t' || p[skip] == '\r')) skip++;
        if (skip == n) continue;
        if (memchr(p, '\0', n)) {
            s = bad_line(out, lenient, tuna_fail(err, TUNA_ERR_FORMAT, "line %d: NUL byte", line), err);
            continue;
        }
        free(buf);
        buf = malloc(n + 1);
        if (!buf) {
            s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(buf, p, n);
        buf[n] = '\0';
        cJSON *o = cJSON_ParseWithOpts(buf, NULL, 1);
        if (!o) {
            s = bad_line(out, lenient, tuna_fail(err, TUNA_ERR_FORMAT, "line %d: not valid JSON", line), err);
            continue;
        }
        if (out->count == cap) {
            int ncap = cap ? 2 * cap : 64;
            tuna_eval_task *grown = realloc(out->tasks, sizeof *grown * (size_t)ncap);
            if (!grown) {
                cJSON_Delete(o);
                s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
                break;
            }
            out->tasks = grown, cap = ncap;
        }
        s = parse_task(o, line, base_dir, &out->tasks[out->count], err);
        cJSON_Delete(o);
        if (s == TUNA_OK) out->count++;
        else s = bad_line(out, lenient, s, err);
    }
    free(buf);
    if (s == TUNA_OK && out->count == 0)
        s = out->bad_count ? tuna_fail(err, TUNA_ERR_FORMAT, "no valid task (first problem: %s)", out->bad_lines[0])
                           : tuna_fail(err, TUNA_ERR_FORMAT, "no tasks");
    if (s != TUNA_OK) tuna_eval_tasks_free(out);
    return s;
}

tuna_status tuna_eval_tasks_parse(const char *text, size_t len, const char *base_dir, tuna_eval_tasks *out,
                                  tuna_error *err) {
    return parse_tasks(text, len, base_dir, 0, out, err);
}

static tuna_status load_tasks(const char *path, int lenient, tuna_eval_tasks *out, tuna_error *err);

tuna_status tuna_eval_tasks_load(const char *path, tuna_eval_tasks *out, tuna_error *err) {
    return load_tasks(path, 0, out, err);
}

tuna_status tuna_eval_tasks_load_lenient(const char *path, tuna_eval_tasks *out, tuna_error *err) {
    return load_tasks(path, 1, out, err);
}

static tuna_status load_tasks(const char *path, int lenient, tuna_eval_tasks *out, tuna_error *err) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t size = 0;
    TUNA_TRY(tuna_read_file(path, (size_t)256 << 20, &text, &size, err));
    char *base = dup_string(path);
    if (!base) {
        free(text);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    char *slash = strrchr(base, '/');
    if (slash) *slash = '\0';
    else strcpy(base, ".");
    tuna_status s = parse_tasks(text, size, base, lenient, out, err);
    if (s != TUNA_OK) tuna_fail_context(err, s, "%s", path);
    free(base);
    free(text);
    return s;
}

void tuna_eval_tasks_free(tuna_eval_tasks *t) {
    for (int i = 0; i < t->count; i++) task_free(&t->tasks[i]);
    for (int i = 0; i < t->bad_count; i++) free(t->bad_lines[i]);
    free(t->bad_lines);
    free(t->tasks);
    memset(t, 0, sizeof *t);
}

void tuna_eval_tasks_filter(tuna_eval_tasks *t, unsigned kinds, int max_per_group) {
    if (kinds & (1u << TUNA_TASK_GENERATE)) kinds |= 1u << TUNA_TASK_REFERENCE;
    int kept = 0;
    for (int i = 0; i < t->count; i++) {
        tuna_eval_task *x = &t->tasks[i];
        int keep = (kinds >> x->kind) & 1;
        if (keep && max_per_group > 0 && x->kind != TUNA_TASK_REFERENCE) {
            int seen = 0;
            for (int k = 0; k < kept; k++)
                seen += t->tasks[k].kind == x->kind && strcmp(t->tasks[k].group, x->group) == 0;
            keep = seen < max_per_group;
        }
        if (keep) t->tasks[kept++] = *x;
        else task_free(x);
    }
    t->count = kept;
}
