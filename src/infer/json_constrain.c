/* JSON-schema constrained decoding (see json_constrain.h): a schema compiled
 * into nodes, a byte-level pushdown matcher, and the token mask. */
#include "infer/json_constrain.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JN_OBJECT, JN_ARRAY, JN_STRING, JN_NUMBER, JN_INTEGER, JN_LITERALS, JN_UNION };

#define MAX_ALTS 8
#define FREE_KEY_MAX 32 /* characters of a key of a free object */

typedef struct {
    int kind;
    int prop_first, n_props; /* object: props[prop_first .. +n_props) in schema order */
    uint64_t required;       /* object: bit i = property i is required */
    int free_value;          /* object without properties: node of every value (keys free); -1 none */
    int item, min_items, max_items;
    int min_len, max_len;    /* string: characters */
    int lit_first, n_lits;   /* literals (enum, const, true/false/null): compact JSON texts */
    int alts[MAX_ALTS], n_alts;
    int min_bytes;           /* fewest bytes of a value of this node */
} jnode;

typedef struct {
    char *text; /* escaped key between the quotes, or a literal's whole JSON text */
    int len;
    int node;   /* property: node of its value */
} jstr;

struct tuna_json_schema {
    jnode *nodes;
    int n_nodes, cap_nodes;
    jstr *strs;
    int n_strs, cap_strs;
    int root;
    int any; /* node of "any JSON value", -1 until needed */
};

/* ---- compiling --------------------------------------------------------------- */

static int new_node(tuna_json_schema *s, int kind, tuna_error *err) {
    if (s->n_nodes >= TUNA_JSON_MAX_NODES) {
        tuna_fail(err, TUNA_ERR_LIMIT, "the schema is too large (more than %d nodes)", TUNA_JSON_MAX_NODES);
        return -1;
    }
    if (s->n_nodes == s->cap_nodes) {
        int cap = s->cap_nodes ? 2 * s->cap_nodes : 16;
        jnode *n = realloc(s->nodes, sizeof *n * (size_t)cap);
        if (!n) {
            tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
            return -1;
        }
        s->nodes = n;
        s->cap_nodes = cap;
    }
    jnode *n = &s->nodes[s->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->free_value = -1;
    n->item = -1;
    n->max_items = TUNA_JSON_MAX_ITEMS;
    n->max_len = TUNA_JSON_MAX_STRING;
    return s->n_nodes++;
}

static int add_str(tuna_json_schema *s, const char *text, size_t len, int node, tuna_error *err) {
    if (len > 1024) {
        tuna_fail(err, TUNA_ERR_LIMIT, "a schema key or enum value is longer than 1024 bytes");
        return -1;
    }
    if (s->n_strs == s->cap_strs) {
        int cap = s->cap_strs ? 2 * s->cap_strs : 16;
        jstr *n = realloc(s->strs, sizeof *n * (size_t)cap);
        if (!n) {
            tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
            return -1;
        }
        s->strs = n;
        s->cap_strs = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        return -1;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    s->strs[s->n_strs] = (jstr){copy, (int)len, node};
    return s->n_strs++;
}

/* A key as it appears between quotes in compact JSON. */
static char *escape_key(const char *k, size_t *out_len) {
    size_t n = strlen(k);
    char *e = malloc(6 * n + 1);
    if (!e) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c == '"' || c == '\\') e[j++] = '\\', e[j++] = (char)c;
        else if (c == '\n') e[j++] = '\\', e[j++] = 'n';
        else if (c == '\t') e[j++] = '\\', e[j++] = 't';
        else if (c == '\r') e[j++] = '\\', e[j++] = 'r';
        else if (c < 0x20) j += (size_t)sprintf(e + j, "\\u%04x", c);
        else e[j++] = (char)c;
    }
    e[j] = '\0';
    *out_len = j;
    return e;
}

/* First bytes a value of node may start with. */
static void first_bytes(const tuna_json_schema *s, int node, uint8_t set[256], int depth) {
    const jnode *n = &s->nodes[node];
    switch (n->kind) {
    case JN_OBJECT: set['{'] = 1; break;
    case JN_ARRAY: set['['] = 1; break;
    case JN_STRING: set['"'] = 1; break;
    case JN_NUMBER:
    case JN_INTEGER:
        set['-'] = 1;
        for (int c = '0'; c <= '9'; c++) set[c] = 1;
        break;
    case JN_LITERALS:
        for (int i = 0; i < n->n_lits; i++) set[(unsigned char)s->strs[n->lit_first + i].text[0]] = 1;
        break;
    case JN_UNION:
        if (depth < 8)
            for (int i = 0; i < n->n_alts; i++) first_bytes(s, n->alts[i], set, depth + 1);
        break;
    }
}

static int make_union(tuna_json_schema *s, const int *alts, int n_alts, tuna_error *err) {
    if (n_alts == 1) return alts[0];
    if (n_alts > MAX_ALTS) {
        tuna_fail(err, TUNA_ERR_INVALID, "at most %d alternatives (anyOf / type list)", MAX_ALTS);
        return -1;
    }
    /* the branch is chosen by the first byte, so branches must start differently */
    uint8_t seen[256] = {0};
    for (int i = 0; i < n_alts; i++) {
        uint8_t set[256] = {0};
        first_bytes(s, alts[i], set, 0);
        for (int c = 0; c < 256; c++) {
            if (set[c] && seen[c]) {
                tuna_fail(err, TUNA_ERR_INVALID,
                          "anyOf / oneOf branches must start with different characters (two may start with '%c')",
                          c >= 32 && c < 127 ? c : '?');
                return -1;
            }
            seen[c] |= set[c];
        }
    }
    int u = new_node(s, JN_UNION, err);
    if (u < 0) return -1;
    memcpy(s->nodes[u].alts, alts, sizeof(int) * (size_t)n_alts);
    s->nodes[u].n_alts = n_alts;
    return u;
}

static int literal_node(tuna_json_schema *s, const char *const *texts, int n, tuna_error *err) {
    int node = new_node(s, JN_LITERALS, err);
    if (node < 0) return -1;
    s->nodes[node].lit_first = s->n_strs;
    s->nodes[node].n_lits = n;
    for (int i = 0; i < n; i++)
        if (add_str(s, texts[i], strlen(texts[i]), -1, err) < 0) return -1;
    return node;
}

static int any_node(tuna_json_schema *s, tuna_error *err);

static int free_object_node(tuna_json_schema *s, int value, tuna_error *err) {
    int o = new_node(s, JN_OBJECT, err);
    if (o < 0) return -1;
    s->nodes[o].free_value = value;
    s->nodes[o].prop_first = s->n_strs;
    return o;
}

/* Any JSON value: a union of a free object, an array of anything, a string, a number and the literals. */
static int any_node(tuna_json_schema *s, tuna_error *err) {
    if (s->any >= 0) return s->any;
    int u = new_node(s, JN_UNION, err);
    if (u < 0) return -1;
    s->any = u;
    int alts[5];
    alts[0] = free_object_node(s, u, err);
    alts[1] = new_node(s, JN_ARRAY, err);
    if (alts[1] >= 0) s->nodes[alts[1]].item = u;
    alts[2] = new_node(s, JN_STRING, err);
    alts[3] = new_node(s, JN_NUMBER, err);
    static const char *const lits[] = {"true", "false", "null"};
    alts[4] = literal_node(s, lits, 3, err);
    for (int i = 0; i < 5; i++)
        if (alts[i] < 0) return -1;
    memcpy(s->nodes[u].alts, alts, sizeof alts);
    s->nodes[u].n_alts = 5;
    return u;
}

static int get_int(const cJSON *obj, const char *key, int dflt, int lo, int hi, int *out, tuna_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != (double)(long long)v->valuedouble) {
        tuna_fail(err, TUNA_ERR_INVALID, "schema %s must be a non-negative integer", key);
        return -1;
    }
    double d = v->valuedouble;
    if (d > hi) d = hi;
    if (d < lo) d = lo;
    *out = (int)d;
    return 0;
}

static int compile_node(tuna_json_schema *s, const cJSON *j, int depth, tuna_error *err);

static int compile_type(tuna_json_schema *s, const cJSON *j, const char *type, int depth, tuna_error *err) {
    if (strcmp(type, "string") == 0) {
        int n = new_node(s, JN_STRING, err);
        if (n < 0) return -1;
        jnode *nd = &s->nodes[n];
        int lo, hi;
        if (get_int(j, "minLength", 0, 0, INT_MAX, &lo, err) || get_int(j, "maxLength", TUNA_JSON_MAX_STRING, 0,
                                                                         TUNA_JSON_MAX_STRING, &hi, err))
            return -1;
        if (lo > hi) {
            tuna_fail(err, TUNA_ERR_INVALID, "string minLength %d is above the most this server writes (%d)", lo, hi);
            return -1;
        }
        nd->min_len = lo;
        nd->max_len = hi;
        return n;
    }
    if (strcmp(type, "number") == 0) return new_node(s, JN_NUMBER, err);
    if (strcmp(type, "integer") == 0) return new_node(s, JN_INTEGER, err);
    if (strcmp(type, "boolean") == 0) {
        static const char *const lits[] = {"true", "false"};
        return literal_node(s, lits, 2, err);
    }
    if (strcmp(type, "null") == 0) {
        static const char *const lits[] = {"null"};
        return literal_node(s, lits, 1, err);
    }
    if (strcmp(type, "array") == 0) {
        int n = new_node(s, JN_ARRAY, err);
        if (n < 0) return -1;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
        if (items && cJSON_IsArray(items)) {
            tuna_fail(err, TUNA_ERR_INVALID, "tuple \"items\" (an array of schemas) is not supported");
            return -1;
        }
        int item = items ? compile_node(s, items, depth + 1, err) : any_node(s, err);
        if (item < 0) return -1;
        int lo, hi;
        if (get_int(j, "minItems", 0, 0, INT_MAX, &lo, err) ||
            get_int(j, "maxItems", TUNA_JSON_MAX_ITEMS, 0, TUNA_JSON_MAX_ITEMS, &hi, err))
            return -1;
        if (lo > hi) {
            tuna_fail(err, TUNA_ERR_INVALID, "array minItems %d is above the most this server writes (%d)", lo, hi);
            return -1;
        }
        s->nodes[n].item = item;
        s->nodes[n].min_items = lo;
        s->nodes[n].max_items = hi;
        return n;
    }
    if (strcmp(type, "object") == 0) {
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "required");
        const cJSON *addl = cJSON_GetObjectItemCaseSensitive(j, "additionalProperties");
        if (props && !cJSON_IsObject(props)) {
            tuna_fail(err, TUNA_ERR_INVALID, "schema properties must be an object");
            return -1;
        }
        if (req && !cJSON_IsArray(req)) {
            tuna_fail(err, TUNA_ERR_INVALID, "schema required must be an array of names");
            return -1;
        }
        int n_props = props ? cJSON_GetArraySize(props) : 0;
        if (n_props == 0 && (!req || cJSON_GetArraySize(req) == 0)) {
            /* no properties: free keys, values by additionalProperties (false: the empty object) */
            int value;
            if (addl && cJSON_IsFalse(addl)) {
                int o = new_node(s, JN_OBJECT, err);
                if (o >= 0) s->nodes[o].prop_first = s->n_strs;
                return o;
            }
            value = addl && cJSON_IsObject(addl) ? compile_node(s, addl, depth + 1, err) : any_node(s, err);
            if (value < 0) return -1;
            return free_object_node(s, value, err);
        }
        /* required names not among the properties get a property of any value */
        const cJSON *r;
        int extra = 0;
        cJSON_ArrayForEach(r, req) {
            if (!cJSON_IsString(r)) {
                tuna_fail(err, TUNA_ERR_INVALID, "schema required must be an array of names");
                return -1;
            }
            if (!props || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring)) extra++;
        }
        if (n_props + extra > TUNA_JSON_MAX_PROPS) {
            tuna_fail(err, TUNA_ERR_LIMIT, "an object schema has more than %d properties", TUNA_JSON_MAX_PROPS);
            return -1;
        }
        int o = new_node(s, JN_OBJECT, err);
        if (o < 0) return -1;
        /* compile the value schemas first: the properties' strings must be contiguous */
        int values[TUNA_JSON_MAX_PROPS];
        const char *names[TUNA_JSON_MAX_PROPS];
        int k = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, props) {
            names[k] = p->string;
            values[k] = compile_node(s, p, depth + 1, err);
            if (values[k++] < 0) return -1;
        }
        cJSON_ArrayForEach(r, req) {
            if (props && cJSON_GetObjectItemCaseSensitive(props, r->valuestring)) continue;
            names[k] = r->valuestring;
            values[k] = any_node(s, err);
            if (values[k++] < 0) return -1;
        }
        s->nodes[o].prop_first = s->n_strs;
        s->nodes[o].n_props = k;
        for (int i = 0; i < k; i++) {
            for (int q = 0; q < i; q++)
                if (strcmp(names[q], names[i]) == 0) {
                    tuna_fail(err, TUNA_ERR_INVALID, "property \"%s\" appears twice", names[i]);
                    return -1;
                }
            size_t len;
            char *e = escape_key(names[i], &len);
            if (!e) {
                tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
                return -1;
            }
            int id = add_str(s, e, len, values[i], err);
            free(e);
            if (id < 0) return -1;
            cJSON_ArrayForEach(r, req) if (strcmp(r->valuestring, names[i]) == 0) s->nodes[o].required |= 1ull << i;
        }
        return o;
    }
    tuna_fail(err, TUNA_ERR_INVALID, "unknown schema type \"%s\"", type);
    return -1;
}

static int compile_node(tuna_json_schema *s, const cJSON *j, int depth, tuna_error *err) {
    if (depth > 32) {
        tuna_fail(err, TUNA_ERR_LIMIT, "the schema nests deeper than 32");
        return -1;
    }
    if (cJSON_IsTrue(j)) return any_node(s, err);
    if (!cJSON_IsObject(j)) {
        tuna_fail(err, TUNA_ERR_INVALID, "a schema must be an object");
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "$ref")) {
        tuna_fail(err, TUNA_ERR_INVALID, "$ref is not supported in schemas");
        return -1;
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enum");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(j, "const");
    if (en || cn) {
        if (en && (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0 || cJSON_GetArraySize(en) > TUNA_JSON_MAX_PROPS)) {
            tuna_fail(err, TUNA_ERR_INVALID, "enum must be an array of 1 to %d values", TUNA_JSON_MAX_PROPS);
            return -1;
        }
        int node = new_node(s, JN_LITERALS, err);
        if (node < 0) return -1;
        s->nodes[node].lit_first = s->n_strs;
        const cJSON *v;
        int n = 0;
        if (en) {
            cJSON_ArrayForEach(v, en) {
                char *text = cJSON_PrintUnformatted(v);
                int id = text ? add_str(s, text, strlen(text), -1, err) : -1;
                if (!text) tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
                cJSON_free(text);
                if (id < 0) return -1;
                n++;
            }
        } else {
            char *text = cJSON_PrintUnformatted(cn);
            int id = text ? add_str(s, text, strlen(text), -1, err) : -1;
            if (!text) tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
            cJSON_free(text);
            if (id < 0) return -1;
            n = 1;
        }
        s->nodes[node].n_lits = n;
        return node;
    }
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(j, "anyOf");
    if (!any) any = cJSON_GetObjectItemCaseSensitive(j, "oneOf");
    if (any) {
        if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) < 1 || cJSON_GetArraySize(any) > MAX_ALTS) {
            tuna_fail(err, TUNA_ERR_INVALID, "anyOf / oneOf must list 1 to %d schemas", MAX_ALTS);
            return -1;
        }
        int alts[MAX_ALTS], n = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, any) {
            alts[n] = compile_node(s, b, depth + 1, err);
            if (alts[n++] < 0) return -1;
        }
        return make_union(s, alts, n, err);
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(j, "type");
    if (cJSON_IsString(type)) return compile_type(s, j, type->valuestring, depth, err);
    if (cJSON_IsArray(type)) {
        int alts[MAX_ALTS], n = 0;
        const cJSON *t;
        cJSON_ArrayForEach(t, type) {
            if (!cJSON_IsString(t) || n == MAX_ALTS) {
                tuna_fail(err, TUNA_ERR_INVALID, "type must be a name or a list of up to %d names", MAX_ALTS);
                return -1;
            }
            alts[n] = compile_type(s, j, t->valuestring, depth, err);
            if (alts[n++] < 0) return -1;
        }
        if (n == 0) {
            tuna_fail(err, TUNA_ERR_INVALID, "type lists no type");
            return -1;
        }
        return make_union(s, alts, n, err);
    }
    if (type) {
        tuna_fail(err, TUNA_ERR_INVALID, "type must be a name or a list of names");
        return -1;
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "properties")) return compile_type(s, j, "object", depth, err);
    if (cJSON_GetObjectItemCaseSensitive(j, "items")) return compile_type(s, j, "array", depth, err);
    return any_node(s, err);
}

/* Fewest bytes of each node, to a fixed point (the "any" node refers to itself). */
static void compute_min_bytes(tuna_json_schema *s) {
    const int inf = 1 << 28;
    for (int i = 0; i < s->n_nodes; i++) s->nodes[i].min_bytes = inf;
    for (int changed = 1, round = 0; changed && round < s->n_nodes + 2; round++) {
        changed = 0;
        for (int i = 0; i < s->n_nodes; i++) {
            jnode *n = &s->nodes[i];
            long m = inf;
            switch (n->kind) {
            case JN_STRING: m = 2 + n->min_len; break;
            case JN_NUMBER:
            case JN_INTEGER: m = 1; break;
            case JN_LITERALS:
                for (int k = 0; k < n->n_lits; k++)
                    if (s->strs[n->lit_first + k].len < m) m = s->strs[n->lit_first + k].len;
                break;
            case JN_ARRAY:
                m = n->min_items == 0 ? 2 : 2 + (long)n->min_items * (s->nodes[n->item].min_bytes + 1) - 1;
                break;
            case JN_OBJECT: {
                m = 2;
                int k = 0;
                for (int p = 0; p < n->n_props; p++)
                    if (n->required >> p & 1) {
                        const jstr *st = &s->strs[n->prop_first + p];
                        m += st->len + 3 + s->nodes[st->node].min_bytes + (k++ ? 1 : 0);
                    }
                break;
            }
            case JN_UNION:
                for (int k = 0; k < n->n_alts; k++)
                    if (s->nodes[n->alts[k]].min_bytes < m) m = s->nodes[n->alts[k]].min_bytes;
                break;
            }
            if (m > inf) m = inf;
            if (m < n->min_bytes) {
                n->min_bytes = (int)m;
                changed = 1;
            }
        }
    }
}

void tuna_json_schema_free(tuna_json_schema *s) {
    if (!s) return;
    for (int i = 0; i < s->n_strs; i++) free(s->strs[i].text);
    free(s->strs);
    free(s->nodes);
    free(s);
}

tuna_status tuna_json_schema_compile(const cJSON *schema, int object_only, tuna_json_schema **out, tuna_error *err) {
    *out = NULL;
    tuna_error local = {0};
    if (!err) err = &local; /* the failing code is read back below */
    err->code = TUNA_OK;
    tuna_json_schema *s = calloc(1, sizeof *s);
    if (!s) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    s->any = -1;
    int root;
    if (schema) root = compile_node(s, schema, 0, err);
    else if (object_only) {
        int value = any_node(s, err);
        root = value < 0 ? -1 : free_object_node(s, value, err);
    } else root = any_node(s, err);
    if (root >= 0 && object_only && s->nodes[root].kind != JN_OBJECT) {
        tuna_fail(err, TUNA_ERR_INVALID, "the schema must describe an object");
        root = -1;
    }
    if (root < 0) {
        tuna_json_schema_free(s);
        return err->code != TUNA_OK ? err->code : TUNA_ERR_INVALID;
    }
    s->root = root;
    compute_min_bytes(s);
    if (s->nodes[root].min_bytes >= (1 << 20)) {
        tuna_json_schema_free(s);
        return tuna_fail(err, TUNA_ERR_INVALID, "the schema admits no finite value");
    }
    *out = s;
    return TUNA_OK;
}

/* ---- matching ----------------------------------------------------------------- */

enum {
    M_VALUE,
    M_STRING,
    M_NUMBER,
    M_LITERAL,
    M_OBJ_OPEN,  /* after '{' */
    M_OBJ_KEY,   /* in a declared key */
    M_OBJ_FREE,  /* in a free key */
    M_OBJ_COLON,
    M_OBJ_AFTER, /* after a value: ',' or '}' */
    M_OBJ_NEXT,  /* after ',': a key */
    M_ARR_OPEN,
    M_ARR_AFTER,
    M_ARR_NEXT,
};

enum { NS_MINUS, NS_ZERO, NS_INT, NS_DOT, NS_FRAC };
#define MAX_INT_DIGITS 12
#define MAX_FRAC_DIGITS 6

void tuna_json_matcher_init(tuna_json_matcher *m, const tuna_json_schema *s) {
    memset(m, 0, sizeof *m);
    m->schema = s;
    m->depth = 1;
    m->stack[0].node = (int16_t)s->root;
    m->stack[0].mode = M_VALUE;
}

static void pop(tuna_json_matcher *m) {
    m->depth--;
    if (m->depth == 0) m->done = 1;
}

static int push_value(tuna_json_matcher *m, int node) {
    if (m->depth >= (int)(sizeof m->stack / sizeof m->stack[0]) || m->depth > 2 * TUNA_JSON_MAX_DEPTH) return 0;
    tuna_json_frame *f = &m->stack[m->depth++];
    memset(f, 0, sizeof *f);
    f->node = (int16_t)node;
    f->mode = M_VALUE;
    return 1;
}

/* Candidate properties at a key: every one from next_prop on up to and
 * including the first required one (a required key is never skipped). */
static uint64_t key_candidates(const jnode *n, int next_prop) {
    uint64_t c = 0;
    for (int i = next_prop; i < n->n_props; i++) {
        c |= 1ull << i;
        if (n->required >> i & 1) break;
    }
    return c;
}

static int required_left(const jnode *n, int next_prop) {
    for (int i = next_prop; i < n->n_props; i++)
        if (n->required >> i & 1) return 1;
    return 0;
}

/* One byte of a string body. -1 dead, 0 goes on, 1 the closing quote. */
static int string_byte(tuna_json_frame *f, unsigned c, int min_len, int max_len) {
    if (f->utf8_left) {
        if (c < f->utf8_lo || c > f->utf8_hi) return -1;
        f->utf8_lo = 0x80;
        f->utf8_hi = 0xBF;
        if (--f->utf8_left == 0) f->count++;
        return 0;
    }
    if (f->sub == 1) { /* after a backslash */
        if (!strchr("\"\\/bfnrt", (int)c) || c == 0) return -1;
        f->sub = 0;
        f->count++;
        return 0;
    }
    if (c == '"') return f->count >= min_len ? 1 : -1;
    if (f->count >= max_len) return -1;
    if (c == '\\') {
        f->sub = 1;
        return 0;
    }
    if (c < 0x20 || c == 0x7F) return -1;
    if (c < 0x80) {
        f->count++;
        return 0;
    }
    /* UTF-8 lead bytes, with the second-byte ranges that rule out overlongs and surrogates */
    f->utf8_lo = 0x80;
    f->utf8_hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) f->utf8_left = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        f->utf8_left = 2;
        if (c == 0xE0) f->utf8_lo = 0xA0;
        if (c == 0xED) f->utf8_hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        f->utf8_left = 3;
        if (c == 0xF0) f->utf8_lo = 0x90;
        if (c == 0xF4) f->utf8_hi = 0x8F;
    } else return -1;
    return 0;
}

static int number_can_end(const tuna_json_frame *f) { return f->sub == NS_ZERO || f->sub == NS_INT || f->sub == NS_FRAC; }

/* One byte of a number: 1 taken, 0 not part of it (the number may end before it), -1 dead. */
static int number_byte(tuna_json_frame *f, unsigned c, int integer) {
    int digit = c >= '0' && c <= '9';
    switch (f->sub) {
    case NS_MINUS:
        if (!digit) return -1;
        f->sub = c == '0' ? NS_ZERO : NS_INT;
        f->count = 1;
        return 1;
    case NS_ZERO:
        if (c == '.' && !integer) {
            f->sub = NS_DOT;
            f->count = 0;
            return 1;
        }
        return digit ? -1 : 0;
    case NS_INT:
        if (digit) {
            if (f->count >= MAX_INT_DIGITS) return -1;
            f->count++;
            return 1;
        }
        if (c == '.' && !integer) {
            f->sub = NS_DOT;
            f->count = 0;
            return 1;
        }
        return 0;
    case NS_DOT:
        if (!digit) return -1;
        f->sub = NS_FRAC;
        f->count = 1;
        return 1;
    case NS_FRAC:
        if (digit) {
            if (f->count >= MAX_FRAC_DIGITS) return -1;
            f->count++;
            return 1;
        }
        return 0;
    }
    return -1;
}

static int literal_all_complete(const tuna_json_schema *s, const jnode *n, const tuna_json_frame *f) {
    for (int i = 0; i < n->n_lits; i++)
        if ((f->cand >> i & 1) && s->strs[n->lit_first + i].len != f->pos) return 0;
    return 1;
}

static int literal_some_complete(const tuna_json_schema *s, const jnode *n, const tuna_json_frame *f) {
    for (int i = 0; i < n->n_lits; i++)
        if ((f->cand >> i & 1) && s->strs[n->lit_first + i].len == f->pos) return 1;
    return 0;
}

/* The first byte of a value. */
static int start_value(tuna_json_matcher *m, tuna_json_frame *f, unsigned c) {
    const tuna_json_schema *s = m->schema;
    for (int hop = 0; hop < 8; hop++) {
        const jnode *n = &s->nodes[f->node];
        switch (n->kind) {
        case JN_UNION: {
            int next = -1;
            for (int i = 0; i < n->n_alts && next < 0; i++) {
                uint8_t set[256] = {0};
                first_bytes(s, n->alts[i], set, 0);
                if (set[c]) next = n->alts[i];
            }
            if (next < 0) return 0;
            f->node = (int16_t)next;
            continue;
        }
        case JN_STRING:
            if (c != '"') return 0;
            f->mode = M_STRING;
            f->count = 0;
            f->sub = 0;
            return 1;
        case JN_NUMBER:
        case JN_INTEGER:
            if (c == '-') f->sub = NS_MINUS, f->count = 0;
            else if (c == '0') f->sub = NS_ZERO, f->count = 1;
            else if (c >= '1' && c <= '9') f->sub = NS_INT, f->count = 1;
            else return 0;
            f->mode = M_NUMBER;
            return 1;
        case JN_LITERALS: {
            uint64_t cand = 0;
            for (int i = 0; i < n->n_lits; i++)
                if ((unsigned char)s->strs[n->lit_first + i].text[0] == c) cand |= 1ull << i;
            if (!cand) return 0;
            f->mode = M_LITERAL;
            f->cand = cand;
            f->pos = 1;
            if (literal_all_complete(s, n, f)) pop(m);
            return 1;
        }
        case JN_OBJECT:
            if (c != '{') return 0;
            f->mode = M_OBJ_OPEN;
            f->next_prop = 0;
            f->count = 0;
            return 1;
        case JN_ARRAY:
            if (c != '[') return 0;
            f->mode = M_ARR_OPEN;
            f->count = 0;
            return 1;
        }
        return 0;
    }
    return 0;
}

/* A key begins (the opening quote was read). */
static int begin_key(tuna_json_frame *f, const jnode *n) {
    if (n->free_value >= 0) {
        if (f->count >= TUNA_JSON_MAX_FREE_KEYS) return 0;
        f->mode = M_OBJ_FREE;
        f->sub = 0;
        f->utf8_left = 0;
        f->pos = 0; /* characters of the key, kept apart from count (keys so far) */
        return 1;
    }
    uint64_t cand = key_candidates(n, f->next_prop);
    if (!cand) return 0;
    f->mode = M_OBJ_KEY;
    f->cand = cand;
    f->pos = 0;
    return 1;
}

static int step(tuna_json_matcher *m, unsigned c) {
    const tuna_json_schema *s = m->schema;
    for (;;) {
        if (m->depth == 0) return 0; /* the value is complete: nothing may follow */
        tuna_json_frame *f = &m->stack[m->depth - 1];
        const jnode *n = &s->nodes[f->node];
        switch (f->mode) {
        case M_VALUE: return start_value(m, f, c);
        case M_STRING: {
            int r = string_byte(f, c, n->min_len, n->max_len);
            if (r < 0) return 0;
            if (r == 1) pop(m);
            return 1;
        }
        case M_NUMBER: {
            int r = number_byte(f, c, n->kind == JN_INTEGER);
            if (r > 0) return 1;
            if (r < 0 || !number_can_end(f)) return 0;
            pop(m);
            continue; /* the byte belongs to what follows the number */
        }
        case M_LITERAL: {
            uint64_t next = 0;
            for (int i = 0; i < n->n_lits; i++) {
                const jstr *st = &s->strs[n->lit_first + i];
                if ((f->cand >> i & 1) && st->len > f->pos && (unsigned char)st->text[f->pos] == c) next |= 1ull << i;
            }
            if (next) {
                f->cand = next;
                f->pos++;
                if (literal_all_complete(s, n, f)) pop(m);
                return 1;
            }
            if (!literal_some_complete(s, n, f)) return 0;
            pop(m);
            continue;
        }
        case M_OBJ_OPEN:
            if (c == '}') {
                if (required_left(n, f->next_prop)) return 0;
                pop(m);
                return 1;
            }
            if (c != '"') return 0;
            return begin_key(f, n);
        case M_OBJ_NEXT:
            if (c != '"') return 0;
            return begin_key(f, n);
        case M_OBJ_KEY: {
            if (c == '"') {
                int chosen = -1;
                for (int i = 0; i < n->n_props; i++)
                    if ((f->cand >> i & 1) && s->strs[n->prop_first + i].len == f->pos) chosen = i;
                if (chosen < 0) return 0;
                f->key = (int16_t)chosen;
                f->next_prop = (int16_t)(chosen + 1);
                f->mode = M_OBJ_COLON;
                return 1;
            }
            uint64_t next = 0;
            for (int i = 0; i < n->n_props; i++) {
                const jstr *st = &s->strs[n->prop_first + i];
                if ((f->cand >> i & 1) && st->len > f->pos && (unsigned char)st->text[f->pos] == c) next |= 1ull << i;
            }
            if (!next) return 0;
            f->cand = next;
            f->pos++;
            return 1;
        }
        case M_OBJ_FREE: {
            /* the key's characters are counted in pos, its string state in sub/utf8 */
            int32_t keys = f->count;
            f->count = f->pos;
            int r = string_byte(f, c, 0, FREE_KEY_MAX);
            f->pos = (int16_t)f->count;
            f->count = keys;
            if (r < 0) return 0;
            if (r == 1) {
                f->key = -1;
                f->mode = M_OBJ_COLON;
            }
            return 1;
        }
        case M_OBJ_COLON:
            if (c != ':') return 0;
            f->mode = M_OBJ_AFTER;
            f->count++;
            return push_value(m, f->key >= 0 ? s->strs[n->prop_first + f->key].node : n->free_value);
        case M_OBJ_AFTER:
            if (c == '}') {
                if (required_left(n, f->next_prop)) return 0;
                pop(m);
                return 1;
            }
            if (c != ',') return 0;
            if (n->free_value >= 0 ? f->count >= TUNA_JSON_MAX_FREE_KEYS : !key_candidates(n, f->next_prop)) return 0;
            f->mode = M_OBJ_NEXT;
            return 1;
        case M_ARR_OPEN:
            if (c == ']') {
                if (n->min_items > 0) return 0;
                pop(m);
                return 1;
            }
            if (n->max_items == 0) return 0;
            f->mode = M_ARR_AFTER;
            f->count++;
            if (!push_value(m, n->item)) return 0;
            continue;
        case M_ARR_AFTER:
            if (c == ']') {
                if (f->count < n->min_items) return 0;
                pop(m);
                return 1;
            }
            if (c != ',' || f->count >= n->max_items) return 0;
            f->mode = M_ARR_NEXT;
            return 1;
        case M_ARR_NEXT:
            f->mode = M_ARR_AFTER;
            f->count++;
            if (!push_value(m, n->item)) return 0;
            continue;
        }
        return 0;
    }
}

int tuna_json_matcher_feed(tuna_json_matcher *m, const char *bytes, size_t n) {
    if (m->dead) return 0;
    for (size_t i = 0; i < n; i++)
        if (!step(m, (unsigned char)bytes[i])) {
            m->dead = 1;
            return 0;
        }
    return 1;
}

int tuna_json_matcher_done(const tuna_json_matcher *m) { return !m->dead && m->done; }

int tuna_json_matcher_can_end(const tuna_json_matcher *m) {
    if (m->dead) return 0;
    if (m->done) return 1;
    if (m->depth != 1) return 0;
    const tuna_json_frame *f = &m->stack[0];
    const jnode *n = &m->schema->nodes[f->node];
    if (f->mode == M_NUMBER) return number_can_end(f);
    if (f->mode == M_LITERAL) return literal_some_complete(m->schema, n, f);
    return 0;
}

/* Bytes of the required properties from index `from` on, each with its comma. */
static long required_cost(const tuna_json_schema *s, const jnode *n, int from, int *count) {
    long c = 0;
    *count = 0;
    for (int i = from; i < n->n_props; i++)
        if (n->required >> i & 1) {
            const jstr *st = &s->strs[n->prop_first + i];
            c += st->len + 3 + s->nodes[st->node].min_bytes + 1;
            (*count)++;
        }
    return c;
}

static long frame_close(const tuna_json_schema *s, const tuna_json_frame *f) {
    const jnode *n = &s->nodes[f->node];
    int k;
    switch (f->mode) {
    case M_VALUE: return n->min_bytes;
    case M_STRING: {
        long need = n->min_len - f->count;
        return (need > 0 ? need : 0) + f->utf8_left + (f->sub == 1) + 1;
    }
    case M_NUMBER: return number_can_end(f) ? 0 : 1;
    case M_LITERAL: {
        long best = 1 << 28;
        for (int i = 0; i < n->n_lits; i++)
            if ((f->cand >> i & 1) && s->strs[n->lit_first + i].len - f->pos < best)
                best = s->strs[n->lit_first + i].len - f->pos;
        return best;
    }
    case M_OBJ_OPEN: {
        long c = required_cost(s, n, f->next_prop, &k);
        return (k ? c - 1 : 0) + 1;
    }
    case M_OBJ_AFTER: return required_cost(s, n, f->next_prop, &k) + 1;
    case M_OBJ_NEXT:
    case M_OBJ_KEY: {
        /* a key must come (NEXT: the quote is still due) */
        long best = 1 << 28;
        if (n->free_value >= 0) {
            best = 2 + 1 + s->nodes[n->free_value].min_bytes;
        } else {
            uint64_t cand = f->mode == M_OBJ_KEY ? f->cand : key_candidates(n, f->next_prop);
            int pos = f->mode == M_OBJ_KEY ? f->pos : -1;
            for (int i = 0; i < n->n_props; i++) {
                if (!(cand >> i & 1)) continue;
                const jstr *st = &s->strs[n->prop_first + i];
                long c = st->len - pos + 1 + 1 + s->nodes[st->node].min_bytes + required_cost(s, n, i + 1, &k);
                if (c < best) best = c;
            }
        }
        return best + 1;
    }
    case M_OBJ_FREE: return (f->sub == 1) + f->utf8_left + 1 + 1 + s->nodes[n->free_value].min_bytes + 1;
    case M_OBJ_COLON: {
        long v = f->key >= 0 ? s->nodes[s->strs[n->prop_first + f->key].node].min_bytes
                             : s->nodes[n->free_value].min_bytes;
        long rest = n->free_value >= 0 ? 0 : required_cost(s, n, f->next_prop, &k);
        return 1 + v + rest + 1;
    }
    case M_ARR_OPEN:
        return n->min_items == 0 ? 1 : (long)n->min_items * (s->nodes[n->item].min_bytes + 1);
    case M_ARR_AFTER: {
        long rest = n->min_items - f->count;
        return (rest > 0 ? rest * (s->nodes[n->item].min_bytes + 1) : 0) + 1;
    }
    case M_ARR_NEXT: {
        long rest = n->min_items - f->count;
        if (rest < 1) rest = 1;
        return rest * (s->nodes[n->item].min_bytes + 1);
    }
    }
    return 0;
}

int tuna_json_close_bytes(const tuna_json_matcher *m) {
    if (m->dead) return 1 << 28;
    long c = 0;
    for (int i = 0; i < m->depth; i++) c += frame_close(m->schema, &m->stack[i]);
    return c > (1 << 28) ? 1 << 28 : (int)c;
}

static void matcher_copy(tuna_json_matcher *dst, const tuna_json_matcher *src) {
    dst->schema = src->schema;
    dst->depth = src->depth;
    dst->done = src->done;
    dst->dead = src->dead;
    memcpy(dst->stack, src->stack, sizeof src->stack[0] * (size_t)src->depth);
}

int tuna_json_allowed_tokens(const tuna_json_matcher *m, const tuna_tokenizer *tok, int vocab, uint8_t *allowed,
                             int *close_after) {
    int count = 0;
    tuna_json_matcher t;
    for (int id = 0; id < vocab; id++) {
        allowed[id] = 0;
        size_t len = 0;
        const char *bytes = tuna_tokenizer_token_bytes(tok, id, &len);
        if (!bytes || len == 0 || tuna_tokenizer_is_special(tok, id)) continue;
        matcher_copy(&t, m);
        if (!tuna_json_matcher_feed(&t, bytes, len)) continue;
        allowed[id] = 1;
        count++;
        if (close_after) close_after[id] = tuna_json_close_bytes(&t);
    }
    return count;
}

int tuna_json_schema_accepts(const tuna_json_schema *s, const char *text, size_t n) {
    tuna_json_matcher m;
    tuna_json_matcher_init(&m, s);
    return tuna_json_matcher_feed(&m, text, n) && tuna_json_matcher_can_end(&m);
}
