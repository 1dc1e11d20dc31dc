/* A restricted unpickler: enough of Python's pickle protocol (0-5 binary
 * opcodes) to read what torch.save writes for a state dict, and nothing else.
 * It never calls anything: GLOBAL/STACK_GLOBAL may name only an allow-listed
 * set of classes and functions, and REDUCE on them builds plain data
 * (dict, tensor record). Every other opcode or global is refused with a message
 * naming it. See docs/checkpoints.md for the exact subset. */
#ifndef TUNA_IO_PICKLE_H
#define TUNA_IO_PICKLE_H

#include "core/status.h"

#include <stdint.h>

typedef enum {
    TUNA_PK_NONE,
    TUNA_PK_BOOL,
    TUNA_PK_INT,       /* fits int64 */
    TUNA_PK_FLOAT,
    TUNA_PK_STR,       /* UTF-8 bytes, NUL-terminated copy */
    TUNA_PK_BYTES,
    TUNA_PK_TUPLE,
    TUNA_PK_LIST,
    TUNA_PK_DICT,      /* dict or collections.OrderedDict; insertion order kept */
    TUNA_PK_GLOBAL,    /* an allow-listed global not yet applied (e.g. torch.FloatStorage) */
    TUNA_PK_STORAGE,   /* persistent id ('storage', type, key, location, numel) */
    TUNA_PK_TENSOR,    /* torch._utils._rebuild_tensor_v2(...) / _rebuild_parameter(...) */
} tuna_pk_type;

typedef enum {
    TUNA_PK_G_ORDERED_DICT = 1,
    TUNA_PK_G_REBUILD_TENSOR_V2,
    TUNA_PK_G_REBUILD_PARAMETER,
    TUNA_PK_G_STORAGE_TYPE,  /* torch.FloatStorage etc.; storage_dtype says which */
} tuna_pk_global;

typedef struct tuna_pk_object tuna_pk_object;
struct tuna_pk_object {
    tuna_pk_type type;
    union {
        int boolean;
        int64_t integer;
        double real;
        struct { char *data; size_t len; } str;                /* STR and BYTES */
        struct { tuna_pk_object **items; size_t count, cap; } seq; /* TUPLE, LIST */
        struct { tuna_pk_object **keys, **values; size_t count, cap; } dict;
        struct { tuna_pk_global which; tuna_dtype storage_dtype; int untyped; } global;
        struct {
            tuna_dtype dtype;   /* element type (from the storage type) */
            int untyped;        /* torch.storage.UntypedStorage: dtype comes from elsewhere */
            char *key;          /* archive member data/KEY */
            int64_t numel;      /* elements (bytes for untyped storage) */
        } storage;
        struct {
            const tuna_pk_object *storage;  /* TUNA_PK_STORAGE */
            int64_t offset;                 /* in elements */
            int ndim;
            int64_t shape[TUNA_MAX_DIMS];
            int64_t stride[TUNA_MAX_DIMS];
        } tensor;
    } u;
};

/* All objects of one load; freed together. */
typedef struct tuna_pickle tuna_pickle;

/* Run the restricted unpickler over data; *root is the value STOP returned. */
tuna_status tuna_pickle_load(const void *data, size_t size, tuna_pickle **pickle,
                             const tuna_pk_object **root, tuna_error *err);
void tuna_pickle_free(tuna_pickle *pickle);

/* For dict lookups by string key: NULL if absent or not a dict. */
const tuna_pk_object *tuna_pk_dict_get(const tuna_pk_object *dict, const char *key);

#endif
