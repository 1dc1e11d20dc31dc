/* The restricted unpickler (see pickle.h and docs/checkpoints.md).
 *
 * A pickle is a program for a stack machine. We run that program with our own
 * interpretation of each opcode, and only for opcodes that build plain data.
 * GLOBAL/STACK_GLOBAL resolve against a fixed allow-list and yield a marker
 * object; REDUCE applies a marker to its argument tuple by building a plain
 * value (an empty dict for OrderedDict(), a tensor record for
 * torch._utils._rebuild_tensor_v2). No Python is involved, so nothing the file
 * names is ever executed: a forbidden global is an error at the opcode that
 * names it. Every read is bounds-checked; every object is owned by the pool. */
#include "io/pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STACK ((size_t)1 << 22)
#define MAX_PROTOCOL 5

struct tuna_pickle {
    tuna_pk_object **objects;
    size_t count, cap;
};

typedef struct {
    const unsigned char *start, *p, *end;
    tuna_pickle *pool;
    tuna_pk_object **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t mark_count, mark_cap;
    tuna_pk_object **memo;
    size_t memo_len, memo_cap;
    tuna_error *err;
    unsigned opcode;        /* the one being executed, for messages */
    size_t opcode_offset;
} machine;

/* ---- growable arrays and the object pool ------------------------------ */

static int grow(void **array, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap : 8;
    while (n < need) {
        if (n > SIZE_MAX / 2 / item) return 0;
        n *= 2;
    }
    void *p = realloc(*array, n * item);
    if (!p) return 0;
    *array = p;
    *cap = n;
    return 1;
}

static tuna_status fail(machine *m, tuna_status code, const char *what) {
    return tuna_fail(m->err, code, "pickle: %s (opcode 0x%02x at offset %zu)", what, m->opcode, m->opcode_offset);
}

static tuna_pk_object *new_object(machine *m, tuna_pk_type type) {
    tuna_pickle *pool = m->pool;
    if (!grow((void **)&pool->objects, &pool->cap, pool->count + 1, sizeof *pool->objects)) return NULL;
    tuna_pk_object *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->type = type;
    pool->objects[pool->count++] = o;
    return o;
}

static void free_object(tuna_pk_object *o) {
    switch (o->type) {
    case TUNA_PK_STR: case TUNA_PK_BYTES: free(o->u.str.data); break;
    case TUNA_PK_TUPLE: case TUNA_PK_LIST: free(o->u.seq.items); break;
    case TUNA_PK_DICT: free(o->u.dict.keys); free(o->u.dict.values); break;
    case TUNA_PK_STORAGE: free(o->u.storage.key); break;
    default: break;
    }
    free(o);
}

void tuna_pickle_free(tuna_pickle *pool) {
    if (!pool) return;
    for (size_t i = 0; i < pool->count; i++) free_object(pool->objects[i]);
    free(pool->objects);
    free(pool);
}

/* ---- the stack --------------------------------------------------------- */

static tuna_status push(machine *m, tuna_pk_object *o) {
    if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    if (m->sp >= MAX_STACK) return fail(m, TUNA_ERR_LIMIT, "stack too deep");
    if (!grow((void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack)) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    m->stack[m->sp++] = o;
    return TUNA_OK;
}

/* Items above the innermost mark must exist without crossing it. */
static size_t floor_of_stack(const machine *m) { return m->mark_count ? m->marks[m->mark_count - 1] : 0; }

static tuna_status pop(machine *m, tuna_pk_object **out) {
    if (m->sp <= floor_of_stack(m)) return fail(m, TUNA_ERR_FORMAT, "stack underflow");
    *out = m->stack[--m->sp];
    return TUNA_OK;
}

static tuna_status top(machine *m, tuna_pk_object **out) {
    if (m->sp <= floor_of_stack(m)) return fail(m, TUNA_ERR_FORMAT, "stack underflow");
    *out = m->stack[m->sp - 1];
    return TUNA_OK;
}

/* Pop the innermost mark: items are stack[*begin .. sp). */
static tuna_status pop_mark(machine *m, size_t *begin) {
    if (!m->mark_count) return fail(m, TUNA_ERR_FORMAT, "no MARK on the stack");
    *begin = m->marks[--m->mark_count];
    return TUNA_OK;
}

/* ---- reading the byte stream ------------------------------------------ */

static tuna_status take(machine *m, size_t n, const unsigned char **out) {
    if ((size_t)(m->end - m->p) < n) return fail(m, TUNA_ERR_FORMAT, "truncated");
    *out = m->p;
    m->p += n;
    return TUNA_OK;
}

static uint64_t le(const unsigned char *b, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

/* ---- values ------------------------------------------------------------ */

static tuna_status push_int(machine *m, int64_t v) {
    tuna_pk_object *o = new_object(m, TUNA_PK_INT);
    if (o) o->u.integer = v;
    return push(m, o);
}

static tuna_status push_bytes(machine *m, tuna_pk_type type, size_t len) {
    const unsigned char *b = NULL;
    TUNA_TRY(take(m, len, &b));
    tuna_pk_object *o = new_object(m, type);
    if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    o->u.str.data = malloc(len + 1);
    if (!o->u.str.data) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    memcpy(o->u.str.data, b, len);
    o->u.str.data[len] = '\0';
    o->u.str.len = len;
    return push(m, o);
}

/* The top len items (from stack[begin]) become a tuple or list, replacing them. */
static tuna_status collect_sequence(machine *m, tuna_pk_type type, size_t begin) {
    size_t n = m->sp - begin;
    tuna_pk_object *o = new_object(m, type);
    if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    if (n) {
        o->u.seq.items = malloc(n * sizeof *o->u.seq.items);
        if (!o->u.seq.items) return fail(m, TUNA_ERR_NOMEM, "out of memory");
        memcpy(o->u.seq.items, m->stack + begin, n * sizeof *o->u.seq.items);
    }
    o->u.seq.count = o->u.seq.cap = n;
    m->sp = begin;
    return push(m, o);
}

static tuna_status dict_set(machine *m, tuna_pk_object *dict, tuna_pk_object *key, tuna_pk_object *value) {
    if (dict->type != TUNA_PK_DICT) return fail(m, TUNA_ERR_FORMAT, "SETITEM on something that is not a dict");
    size_t n = dict->u.dict.count, cap = dict->u.dict.cap;
    if (!grow((void **)&dict->u.dict.keys, &cap, n + 1, sizeof(tuna_pk_object *))) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    cap = dict->u.dict.cap;
    if (!grow((void **)&dict->u.dict.values, &cap, n + 1, sizeof(tuna_pk_object *))) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    dict->u.dict.cap = cap;
    dict->u.dict.keys[n] = key;
    dict->u.dict.values[n] = value;
    dict->u.dict.count = n + 1;
    return TUNA_OK;
}

static tuna_status list_append(machine *m, tuna_pk_object *list, tuna_pk_object *item) {
    if (list->type != TUNA_PK_LIST) return fail(m, TUNA_ERR_FORMAT, "APPEND on something that is not a list");
    if (!grow((void **)&list->u.seq.items, &list->u.seq.cap, list->u.seq.count + 1, sizeof(tuna_pk_object *)))
        return fail(m, TUNA_ERR_NOMEM, "out of memory");
    list->u.seq.items[list->u.seq.count++] = item;
    return TUNA_OK;
}

/* ---- globals: the allow-list ------------------------------------------ */

static const struct {
    const char *name;
    tuna_dtype dtype;
} storage_types[] = {
    {"FloatStorage", TUNA_F32}, {"BFloat16Storage", TUNA_BF16}, {"HalfStorage", TUNA_F16},
    {"DoubleStorage", TUNA_F64}, {"LongStorage", TUNA_I64},     {"IntStorage", TUNA_I32},
    {"ShortStorage", TUNA_I16},  {"CharStorage", TUNA_I8},      {"ByteStorage", TUNA_U8},
    {"BoolStorage", TUNA_BOOL},
};

static tuna_status resolve_global(machine *m, const char *module, const char *name) {
    tuna_pk_object *o = new_object(m, TUNA_PK_GLOBAL);
    if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    if (strcmp(module, "collections") == 0 && strcmp(name, "OrderedDict") == 0) {
        o->u.global.which = TUNA_PK_G_ORDERED_DICT;
    } else if (strcmp(module, "torch._utils") == 0 && strcmp(name, "_rebuild_tensor_v2") == 0) {
        o->u.global.which = TUNA_PK_G_REBUILD_TENSOR_V2;
    } else if (strcmp(module, "torch._utils") == 0 &&
               (strcmp(name, "_rebuild_parameter") == 0 || strcmp(name, "_rebuild_parameter_with_state") == 0)) {
        o->u.global.which = TUNA_PK_G_REBUILD_PARAMETER;
    } else {
        int found = 0;
        if (strcmp(module, "torch") == 0)
            for (size_t i = 0; i < sizeof storage_types / sizeof storage_types[0]; i++)
                if (strcmp(name, storage_types[i].name) == 0) {
                    o->u.global.which = TUNA_PK_G_STORAGE_TYPE;
                    o->u.global.storage_dtype = storage_types[i].dtype;
                    found = 1;
                }
        if (!found) {
            return tuna_fail(m->err, TUNA_ERR_UNSUPPORTED,
                             "pickle: refusing global %.100s.%.100s (at offset %zu): only state-dict globals "
                             "(collections.OrderedDict, torch._utils._rebuild_tensor_v2/_rebuild_parameter, "
                             "torch.*Storage) are allowed",
                             module, name, m->opcode_offset);
        }
    }
    return push(m, o);
}

/* GLOBAL: "module\nname\n" */
static tuna_status op_global(machine *m) {
    char parts[2][256];
    for (int i = 0; i < 2; i++) {
        const unsigned char *nl = memchr(m->p, '\n', (size_t)(m->end - m->p));
        if (!nl) return fail(m, TUNA_ERR_FORMAT, "GLOBAL without newline");
        size_t len = (size_t)(nl - m->p);
        if (len >= sizeof parts[i] || memchr(m->p, 0, len)) return fail(m, TUNA_ERR_FORMAT, "GLOBAL name too long or bad");
        memcpy(parts[i], m->p, len);
        parts[i][len] = '\0';
        m->p = nl + 1;
    }
    return resolve_global(m, parts[0], parts[1]);
}

static tuna_status op_stack_global(machine *m) {
    tuna_pk_object *name = NULL, *module = NULL;
    TUNA_TRY(pop(m, &name));
    TUNA_TRY(pop(m, &module));
    if (name->type != TUNA_PK_STR || module->type != TUNA_PK_STR)
        return fail(m, TUNA_ERR_FORMAT, "STACK_GLOBAL operands are not strings");
    if (strlen(name->u.str.data) != name->u.str.len || strlen(module->u.str.data) != module->u.str.len)
        return fail(m, TUNA_ERR_FORMAT, "STACK_GLOBAL name holds a NUL byte");
    return resolve_global(m, module->u.str.data, name->u.str.data);
}

/* ---- REDUCE / BUILD / BINPERSID --------------------------------------- */

static int int_tuple(const tuna_pk_object *o, int64_t *values, int *n) {
    if (o->type != TUNA_PK_TUPLE || o->u.seq.count > TUNA_MAX_DIMS) return 0;
    for (size_t i = 0; i < o->u.seq.count; i++) {
        if (o->u.seq.items[i]->type != TUNA_PK_INT) return 0;
        values[i] = o->u.seq.items[i]->u.integer;
    }
    *n = (int)o->u.seq.count;
    return 1;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
static tuna_status rebuild_tensor(machine *m, const tuna_pk_object *args) {
    size_t n = args->u.seq.count;
    if (n != 6 && n != 7) return fail(m, TUNA_ERR_FORMAT, "_rebuild_tensor_v2 expects 6 or 7 arguments");
    tuna_pk_object *const *a = args->u.seq.items;
    if (a[0]->type != TUNA_PK_STORAGE) return fail(m, TUNA_ERR_FORMAT, "_rebuild_tensor_v2: first argument is not a storage");
    if (a[1]->type != TUNA_PK_INT) return fail(m, TUNA_ERR_FORMAT, "_rebuild_tensor_v2: storage offset is not an int");
    tuna_pk_object *o = new_object(m, TUNA_PK_TENSOR);
    if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    int ndim = 0, nstride = 0;
    if (!int_tuple(a[2], o->u.tensor.shape, &ndim) || !int_tuple(a[3], o->u.tensor.stride, &nstride) || ndim != nstride)
        return fail(m, TUNA_ERR_FORMAT, "_rebuild_tensor_v2: bad size/stride tuples (or more than 8 dims)");
    o->u.tensor.storage = a[0];
    o->u.tensor.offset = a[1]->u.integer;
    o->u.tensor.ndim = ndim;
    return push(m, o);
}

static tuna_status op_reduce(machine *m) {
    tuna_pk_object *args = NULL, *callable = NULL;
    TUNA_TRY(pop(m, &args));
    TUNA_TRY(pop(m, &callable));
    if (callable->type != TUNA_PK_GLOBAL) return fail(m, TUNA_ERR_FORMAT, "REDUCE on something that is not a global");
    if (args->type != TUNA_PK_TUPLE) return fail(m, TUNA_ERR_FORMAT, "REDUCE arguments are not a tuple");
    switch (callable->u.global.which) {
    case TUNA_PK_G_ORDERED_DICT:
        if (args->u.seq.count != 0) return fail(m, TUNA_ERR_UNSUPPORTED, "OrderedDict(...) with arguments");
        return push(m, new_object(m, TUNA_PK_DICT));
    case TUNA_PK_G_REBUILD_TENSOR_V2:
        return rebuild_tensor(m, args);
    case TUNA_PK_G_REBUILD_PARAMETER:
        /* (data, requires_grad, backward_hooks[, state]): the parameter is its data */
        if (args->u.seq.count < 3 || args->u.seq.count > 4 || args->u.seq.items[0]->type != TUNA_PK_TENSOR)
            return fail(m, TUNA_ERR_FORMAT, "_rebuild_parameter: bad arguments");
        return push(m, args->u.seq.items[0]);
    case TUNA_PK_G_STORAGE_TYPE:
    default:
        return fail(m, TUNA_ERR_UNSUPPORTED, "REDUCE on a storage type");
    }
}

/* BUILD sets an object's __dict__/__setstate__: an OrderedDict gets its
 * `_metadata` attribute this way. The state is data we do not need: dropped. */
static tuna_status op_build(machine *m) {
    tuna_pk_object *state = NULL, *target = NULL;
    TUNA_TRY(pop(m, &state));
    TUNA_TRY(top(m, &target));
    if (target->type != TUNA_PK_DICT && target->type != TUNA_PK_TENSOR)
        return fail(m, TUNA_ERR_UNSUPPORTED, "BUILD on something other than a dict or tensor");
    return TUNA_OK;
}

/* Persistent id of a torch storage: ('storage', storage_type, key, location, numel) */
static tuna_status op_binpersid(machine *m) {
    tuna_pk_object *pid = NULL;
    TUNA_TRY(pop(m, &pid));
    if (pid->type != TUNA_PK_TUPLE || pid->u.seq.count != 5) return fail(m, TUNA_ERR_FORMAT, "persistent id is not a 5-tuple");
    tuna_pk_object *const *a = pid->u.seq.items;
    if (a[0]->type != TUNA_PK_STR || strcmp(a[0]->u.str.data, "storage") != 0)
        return fail(m, TUNA_ERR_UNSUPPORTED, "persistent id is not a 'storage'");
    if (a[1]->type != TUNA_PK_GLOBAL || a[1]->u.global.which != TUNA_PK_G_STORAGE_TYPE)
        return fail(m, TUNA_ERR_FORMAT, "persistent id: storage type is not a torch storage class");
    if (a[2]->type != TUNA_PK_STR || a[3]->type != TUNA_PK_STR || a[4]->type != TUNA_PK_INT || a[4]->u.integer < 0)
        return fail(m, TUNA_ERR_FORMAT, "persistent id: bad key, location or size");
    const char *key = a[2]->u.str.data;
    if (!key[0] || strlen(key) != a[2]->u.str.len || strchr(key, '/') || strcmp(key, "..") == 0 || strcmp(key, ".") == 0)
        return fail(m, TUNA_ERR_FORMAT, "persistent id: bad storage key");
    tuna_pk_object *o = new_object(m, TUNA_PK_STORAGE);
    if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    o->u.storage.dtype = a[1]->u.global.storage_dtype;
    o->u.storage.numel = a[4]->u.integer;
    o->u.storage.key = strdup(key);
    if (!o->u.storage.key) return fail(m, TUNA_ERR_NOMEM, "out of memory");
    return push(m, o);
}

/* ---- memo -------------------------------------------------------------- */

/* Python's pickler numbers memo entries 0, 1, 2, ...: we accept an index that
 * overwrites an entry or appends the next one, never a sparse jump (which
 * would let 5 bytes of input allocate gigabytes). */
static tuna_status memo_put(machine *m, uint64_t index) {
    tuna_pk_object *o = NULL;
    TUNA_TRY(top(m, &o));
    if (index > m->memo_len) return fail(m, TUNA_ERR_UNSUPPORTED, "memo index out of sequence");
    if (index == m->memo_len) {
        if (!grow((void **)&m->memo, &m->memo_cap, m->memo_len + 1, sizeof *m->memo)) return fail(m, TUNA_ERR_NOMEM, "out of memory");
        m->memo_len++;
    }
    m->memo[index] = o;
    return TUNA_OK;
}

static tuna_status memo_get(machine *m, uint64_t index) {
    if (index >= m->memo_len) return fail(m, TUNA_ERR_FORMAT, "memo index not defined");
    return push(m, m->memo[index]);
}

/* ---- the interpreter loop --------------------------------------------- */

static const char *opcode_name(unsigned op) {
    switch (op) {
    case 'I': return "INT"; case 'L': return "LONG"; case 'F': return "FLOAT"; case 'S': return "STRING";
    case 'V': return "UNICODE"; case 'P': return "PERSID"; case 'g': return "GET"; case 'p': return "PUT";
    case 'i': return "INST"; case 'o': return "OBJ"; case 'T': return "BINSTRING"; case 'U': return "SHORT_BINSTRING";
    case 0x81: return "NEWOBJ"; case 0x82: return "EXT1"; case 0x83: return "EXT2"; case 0x84: return "EXT4";
    case 0x8b: return "LONG4"; case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS"; case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX"; case 0x96: return "BYTEARRAY8"; case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown";
    }
}

static tuna_status step(machine *m, int *stopped) {
    const unsigned char *b = NULL;
    m->opcode_offset = (size_t)(m->p - m->start);
    TUNA_TRY(take(m, 1, &b));
    unsigned op = m->opcode = b[0];
    tuna_pk_object *o = NULL, *k = NULL, *v = NULL;
    size_t begin = 0;
    switch (op) {
    case 0x80: /* PROTO */
        TUNA_TRY(take(m, 1, &b));
        if (b[0] > MAX_PROTOCOL) return fail(m, TUNA_ERR_UNSUPPORTED, "pickle protocol above 5");
        return TUNA_OK;
    case 0x95: /* FRAME: a length hint we do not need */
        return take(m, 8, &b);
    case '.': /* STOP */
        *stopped = 1;
        return TUNA_OK;
    case '(': /* MARK */
        if (!grow((void **)&m->marks, &m->mark_cap, m->mark_count + 1, sizeof *m->marks)) return fail(m, TUNA_ERR_NOMEM, "out of memory");
        m->marks[m->mark_count++] = m->sp;
        return TUNA_OK;
    case '}': return push(m, new_object(m, TUNA_PK_DICT));    /* EMPTY_DICT */
    case ']': return push(m, new_object(m, TUNA_PK_LIST));    /* EMPTY_LIST */
    case ')': return collect_sequence(m, TUNA_PK_TUPLE, m->sp); /* EMPTY_TUPLE */
    case 'N': return push(m, new_object(m, TUNA_PK_NONE));    /* NONE */
    case 0x88: case 0x89:                                     /* NEWTRUE, NEWFALSE */
        o = new_object(m, TUNA_PK_BOOL);
        if (o) o->u.boolean = op == 0x88;
        return push(m, o);
    case 'J': TUNA_TRY(take(m, 4, &b)); return push_int(m, (int32_t)(uint32_t)le(b, 4)); /* BININT */
    case 'K': TUNA_TRY(take(m, 1, &b)); return push_int(m, b[0]);                       /* BININT1 */
    case 'M': TUNA_TRY(take(m, 2, &b)); return push_int(m, (int64_t)le(b, 2));          /* BININT2 */
    case 0x8a: { /* LONG1: n bytes of little-endian two's complement */
        TUNA_TRY(take(m, 1, &b));
        int n = b[0];
        if (n > 8) return fail(m, TUNA_ERR_UNSUPPORTED, "integer wider than 64 bits");
        TUNA_TRY(take(m, (size_t)n, &b));
        uint64_t u = le(b, n);
        if (n > 0 && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        return push_int(m, (int64_t)u);
    }
    case 'G': { /* BINFLOAT: big-endian IEEE double */
        TUNA_TRY(take(m, 8, &b));
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | b[i];
        o = new_object(m, TUNA_PK_FLOAT);
        if (o) memcpy(&o->u.real, &u, sizeof u);
        return push(m, o);
    }
    case 0x8c: TUNA_TRY(take(m, 1, &b)); return push_bytes(m, TUNA_PK_STR, b[0]);         /* SHORT_BINUNICODE */
    case 'X': TUNA_TRY(take(m, 4, &b)); return push_bytes(m, TUNA_PK_STR, (size_t)le(b, 4)); /* BINUNICODE */
    case 0x8d: TUNA_TRY(take(m, 8, &b));                                                 /* BINUNICODE8 */
        if (le(b, 8) > (uint64_t)(m->end - m->p)) return fail(m, TUNA_ERR_FORMAT, "truncated");
        return push_bytes(m, TUNA_PK_STR, (size_t)le(b, 8));
    case 'C': TUNA_TRY(take(m, 1, &b)); return push_bytes(m, TUNA_PK_BYTES, b[0]);         /* SHORT_BINBYTES */
    case 'B': TUNA_TRY(take(m, 4, &b)); return push_bytes(m, TUNA_PK_BYTES, (size_t)le(b, 4)); /* BINBYTES */
    case 't': TUNA_TRY(pop_mark(m, &begin)); return collect_sequence(m, TUNA_PK_TUPLE, begin); /* TUPLE */
    case 'l': TUNA_TRY(pop_mark(m, &begin)); return collect_sequence(m, TUNA_PK_LIST, begin);  /* LIST */
    case 0x85: case 0x86: case 0x87: {                                                     /* TUPLE1..3 */
        size_t n = op - 0x84;
        if (m->sp < floor_of_stack(m) + n) return fail(m, TUNA_ERR_FORMAT, "stack underflow");
        return collect_sequence(m, TUNA_PK_TUPLE, m->sp - n);
    }
    case 'd': /* DICT: MARK k v k v ... */
        TUNA_TRY(pop_mark(m, &begin));
        if ((m->sp - begin) % 2) return fail(m, TUNA_ERR_FORMAT, "DICT with an odd number of items");
        o = new_object(m, TUNA_PK_DICT);
        if (!o) return fail(m, TUNA_ERR_NOMEM, "out of memory");
        for (size_t i = begin; i < m->sp; i += 2) TUNA_TRY(dict_set(m, o, m->stack[i], m->stack[i + 1]));
        m->sp = begin;
        return push(m, o);
    case 's': /* SETITEM */
        TUNA_TRY(pop(m, &v));
        TUNA_TRY(pop(m, &k));
        TUNA_TRY(top(m, &o));
        return dict_set(m, o, k, v);
    case 'u': /* SETITEMS */
        TUNA_TRY(pop_mark(m, &begin));
        if ((m->sp - begin) % 2) return fail(m, TUNA_ERR_FORMAT, "SETITEMS with an odd number of items");
        if (begin <= floor_of_stack(m)) return fail(m, TUNA_ERR_FORMAT, "SETITEMS without a dict");
        o = m->stack[begin - 1];
        for (size_t i = begin; i < m->sp; i += 2) TUNA_TRY(dict_set(m, o, m->stack[i], m->stack[i + 1]));
        m->sp = begin;
        return TUNA_OK;
    case 'a': /* APPEND */
        TUNA_TRY(pop(m, &v));
        TUNA_TRY(top(m, &o));
        return list_append(m, o, v);
    case 'e': /* APPENDS */
        TUNA_TRY(pop_mark(m, &begin));
        if (begin <= floor_of_stack(m)) return fail(m, TUNA_ERR_FORMAT, "APPENDS without a list");
        o = m->stack[begin - 1];
        for (size_t i = begin; i < m->sp; i++) TUNA_TRY(list_append(m, o, m->stack[i]));
        m->sp = begin;
        return TUNA_OK;
    case '0': return pop(m, &o); /* POP */
    case '1': TUNA_TRY(pop_mark(m, &begin)); m->sp = begin; return TUNA_OK; /* POP_MARK */
    case '2': TUNA_TRY(top(m, &o)); return push(m, o); /* DUP */
    case 'q': TUNA_TRY(take(m, 1, &b)); return memo_put(m, b[0]);     /* BINPUT */
    case 'r': TUNA_TRY(take(m, 4, &b)); return memo_put(m, le(b, 4)); /* LONG_BINPUT */
    case 0x94: return memo_put(m, m->memo_len);                       /* MEMOIZE */
    case 'h': TUNA_TRY(take(m, 1, &b)); return memo_get(m, b[0]);     /* BINGET */
    case 'j': TUNA_TRY(take(m, 4, &b)); return memo_get(m, le(b, 4)); /* LONG_BINGET */
    case 'c': return op_global(m);                                    /* GLOBAL */
    case 0x93: return op_stack_global(m);                             /* STACK_GLOBAL */
    case 'R': return op_reduce(m);                                    /* REDUCE */
    case 'b': return op_build(m);                                     /* BUILD */
    case 'Q': return op_binpersid(m);                                 /* BINPERSID */
    default: {
        char what[96];
        snprintf(what, sizeof what, "unsupported opcode %s", opcode_name(op));
        return fail(m, TUNA_ERR_UNSUPPORTED, what);
    }
    }
}

tuna_status tuna_pickle_load(const void *data, size_t size, tuna_pickle **pickle, const tuna_pk_object **root,
                             tuna_error *err) {
    *pickle = NULL;
    *root = NULL;
    machine m = {.start = data, .p = data, .end = (const unsigned char *)data + size, .err = err};
    m.pool = calloc(1, sizeof *m.pool);
    if (!m.pool) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_status s = TUNA_OK;
    int stopped = 0;
    while (s == TUNA_OK && !stopped) {
        if (m.p == m.end) { s = tuna_fail(err, TUNA_ERR_FORMAT, "pickle: ends without STOP"); break; }
        s = step(&m, &stopped);
    }
    tuna_pk_object *result = NULL;
    if (s == TUNA_OK) s = pop(&m, &result);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (s != TUNA_OK) { tuna_pickle_free(m.pool); return s; }
    *pickle = m.pool;
    *root = result;
    return TUNA_OK;
}

const tuna_pk_object *tuna_pk_dict_get(const tuna_pk_object *dict, const char *key) {
    if (!dict || dict->type != TUNA_PK_DICT) return NULL;
    const tuna_pk_object *found = NULL; /* the last assignment wins, as in Python */
    size_t len = strlen(key);
    for (size_t i = 0; i < dict->u.dict.count; i++) {
        const tuna_pk_object *k = dict->u.dict.keys[i];
        if (k->type == TUNA_PK_STR && k->u.str.len == len && memcmp(k->u.str.data, key, len) == 0) found = dict->u.dict.values[i];
    }
    return found;
}
