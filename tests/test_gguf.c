/* GGUF reader and writer: a round trip of metadata and tensors of every type
 * we write (f32, f16, bf16, the block types, 4-D), the streamed writer, the
 * byte layout of a tiny file checked field by field, every truncation and a
 * set of hostile edits refused cleanly, and a .gguf model loading through
 * tuna_checkpoint_open. Interoperability with ggml's Python package is
 * tools/gguf_interop.py (run here when its venv exists). */
#include "test.h"

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "ops/cpu/quant.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char *memfile(size_t *size, const tuna_gguf_value *kv, size_t n_kv, const tuna_gguf_tensor_in *t, size_t n,
                     tuna_gguf_fill_fn fill, void *ctx) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, size);
    tuna_error err = {0};
    tuna_status s = tuna_gguf_write_stream(f, kv, n_kv, t, n, fill, ctx, &err);
    fclose(f);
    if (s != TUNA_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

static tuna_status fill_ramp(void *ctx, size_t index, void *buffer, tuna_error *err) {
    (void)err;
    float *f = buffer;
    int64_t n = *(int64_t *)ctx;
    for (int64_t i = 0; i < n; i++) f[i] = (float)i * (index == 0 ? 1.0f : 0.5f);
    return TUNA_OK;
}

TEST(round_trip) {
    float f32[2 * 3] = {1, 2, 3, 4, 5, 6};
    uint16_t bf[4 * 64], hf[64];
    float src[4 * 256];
    for (int i = 0; i < 4 * 256; i++) src[i] = sinf((float)i * 0.37f);
    for (int i = 0; i < 4 * 64; i++) bf[i] = tuna_f32_to_bf16(src[i]);
    for (int i = 0; i < 64; i++) hf[i] = tuna_f32_to_f16(src[i]);
    static uint8_t q8[4 * 256 / 32 * 34], q4k[4 * 144];
    REQUIRE(tuna_quantize_rows(TUNA_Q8_0, src, q8, 4, 256, NULL, NULL) == TUNA_OK, "q8");
    REQUIRE(tuna_quantize_rows(TUNA_Q4_K, src, q4k, 4, 256, NULL, NULL) == TUNA_OK, "q4k");
    float conv[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++) conv[i] = (float)i;
    tuna_gguf_tensor_in t[] = {
        {"a.f32", TUNA_F32, 2, {2, 3}, f32},          {"b.bf16", TUNA_BF16, 2, {4, 64}, bf},
        {"c.f16", TUNA_F16, 1, {64}, hf},             {"d.q8_0", TUNA_Q8_0, 2, {4, 256}, q8},
        {"e.q4_k", TUNA_Q4_K, 2, {4, 256}, q4k},      {"f.conv", TUNA_F32, 4, {2, 3, 2, 2}, conv},
    };
    tuna_gguf_value kv[] = {
        {.key = "general.architecture", .type = TUNA_GGUF_STRING, .str = "tuna2"},
        {.key = "tuna2.block_count", .type = TUNA_GGUF_UINT32, .u = 4},
        {.key = "tuna2.eps", .type = TUNA_GGUF_FLOAT32, .f = 1e-6},
        {.key = "tuna2.neg", .type = TUNA_GGUF_INT64, .i = -5},
        {.key = "tuna2.flag", .type = TUNA_GGUF_BOOL, .u = 1},
    };
    size_t size;
    char *buf = memfile(&size, kv, 5, t, 6, NULL, NULL);
    REQUIRE(buf, "written");
    tuna_gguf g;
    tuna_error err = {0};
    REQUIRE(tuna_gguf_parse(buf, size, "mem", &g, &err) == TUNA_OK, "parse: %s", err.message);
    CHECK(g.version == 3 && g.alignment == 32 && g.count == 6 && g.kv_count == 6, "counts");
    CHECK(g.data_offset % 32 == 0, "data section aligned");
    size_t len;
    const char *arch = tuna_gguf_get_string(&g, "general.architecture", &len);
    CHECK(arch && strcmp(arch, "tuna2") == 0 && len == 5, "architecture");
    CHECK(tuna_gguf_get(&g, "tuna2.block_count")->u == 4, "u32");
    CHECK(fabs(tuna_gguf_get(&g, "tuna2.eps")->f - 1e-6) < 1e-12, "f32");
    CHECK(tuna_gguf_get(&g, "tuna2.neg")->i == -5, "i64");
    CHECK(tuna_gguf_get(&g, "tuna2.flag")->u == 1, "bool");
    CHECK(!tuna_gguf_get_string(&g, "tuna2.block_count", NULL), "not a string");
    for (size_t i = 0; i < 6; i++) {
        const tuna_tensor *r = tuna_gguf_find(&g, t[i].name);
        REQUIRE(r, "find %s", t[i].name);
        CHECK(r->dtype == t[i].dtype && r->ndim == t[i].ndim, "%s dtype/rank", t[i].name);
        for (int d = 0; d < r->ndim; d++) CHECK(r->shape[d] == t[i].shape[d], "%s shape[%d]", t[i].name, d);
        CHECK(memcmp(r->data, t[i].data, tuna_tensor_nbytes(r)) == 0, "%s bytes", t[i].name);
        CHECK(((uintptr_t)r->data - (uintptr_t)buf - g.data_offset) % 32 == 0, "%s aligned", t[i].name);
    }
    CHECK(!tuna_gguf_find(&g, "zzz"), "absent");
    tuna_gguf_close(&g);
    free(buf);
}

/* The bytes of a one-tensor file, field by field (ggml's layout). */
TEST(byte_layout) {
    float v[2] = {1.5f, -2.0f};
    tuna_gguf_tensor_in t = {"w", TUNA_F32, 2, {1, 2}, v};
    tuna_gguf_value kv = {.key = "k", .type = TUNA_GGUF_UINT8, .u = 7};
    size_t size;
    unsigned char *b = (unsigned char *)memfile(&size, &kv, 1, &t, 1, NULL, NULL);
    REQUIRE(b, "written");
    size_t p = 0;
    CHECK(memcmp(b, "GGUF", 4) == 0, "magic");
    uint32_t u32;
    uint64_t u64;
    memcpy(&u32, b + 4, 4);
    CHECK(u32 == 3, "version");
    memcpy(&u64, b + 8, 8);
    CHECK(u64 == 1, "tensor count");
    memcpy(&u64, b + 16, 8);
    CHECK(u64 == 2, "kv count (k and general.alignment)");
    p = 24;
    memcpy(&u64, b + p, 8);
    CHECK(u64 == 1 && b[p + 8] == 'k', "key");
    memcpy(&u32, b + p + 9, 4);
    CHECK(u32 == TUNA_GGUF_UINT8 && b[p + 13] == 7, "u8 value");
    p += 14;
    memcpy(&u64, b + p, 8);
    CHECK(u64 == 17 && memcmp(b + p + 8, "general.alignment", 17) == 0, "alignment key");
    p += 25;
    memcpy(&u32, b + p, 4);
    CHECK(u32 == TUNA_GGUF_UINT32, "u32 type");
    memcpy(&u32, b + p + 4, 4);
    CHECK(u32 == 32, "alignment 32");
    p += 8;
    memcpy(&u64, b + p, 8);
    CHECK(u64 == 1 && b[p + 8] == 'w', "tensor name");
    p += 9;
    memcpy(&u32, b + p, 4);
    CHECK(u32 == 2, "n_dims");
    uint64_t ne[2];
    memcpy(ne, b + p + 4, 16);
    CHECK(ne[0] == 2 && ne[1] == 1, "ne innermost first");
    memcpy(&u32, b + p + 20, 4);
    CHECK(u32 == 0, "GGML_TYPE_F32");
    memcpy(&u64, b + p + 24, 8);
    CHECK(u64 == 0, "offset 0");
    p += 32;
    size_t data = (p + 31) / 32 * 32;
    CHECK(size == data + 32, "one padded tensor after the aligned header: %zu", size);
    CHECK(memcmp(b + data, v, 8) == 0, "data");
    free(b);
}

TEST(streamed_fill) {
    int64_t n = 1000;
    tuna_gguf_tensor_in t[2] = {{"x", TUNA_F32, 1, {1000}, NULL}, {"y", TUNA_F32, 2, {10, 100}, NULL}};
    size_t size;
    char *buf = memfile(&size, NULL, 0, t, 2, fill_ramp, &n);
    REQUIRE(buf, "written");
    tuna_gguf g;
    REQUIRE(tuna_gguf_parse(buf, size, NULL, &g, NULL) == TUNA_OK, "parse");
    const float *y = tuna_gguf_find(&g, "y")->data;
    CHECK(y[999] == 499.5f && ((const float *)tuna_gguf_find(&g, "x")->data)[7] == 7.0f, "filled");
    tuna_gguf_close(&g);
    free(buf);
    tuna_error err = {0};
    CHECK(!memfile(&size, NULL, 0, t, 2, NULL, NULL), "no data and no fill refused");
    tuna_gguf_tensor_in bad = {"a_name_that_is_far_too_long_for_ggml_which_keeps_names_under_64_bytes", TUNA_F32, 1, {1}, &n};
    FILE *f = fopen("/dev/null", "wb");
    CHECK(tuna_gguf_write_stream(f, NULL, 0, &bad, 1, NULL, NULL, &err) == TUNA_ERR_INVALID, "long name refused");
    tuna_gguf_tensor_in odd = {"q", TUNA_Q8_0, 2, {2, 48}, &n};
    CHECK(tuna_gguf_write_stream(f, NULL, 0, &odd, 1, NULL, NULL, &err) == TUNA_ERR_INVALID, "48 not whole Q8_0 blocks");
    fclose(f);
}

/* A valid file, then edits of it that must be refused (and every prefix). */
static unsigned char *small_file(size_t *size) {
    static float v[64];
    for (int i = 0; i < 64; i++) v[i] = (float)i;
    tuna_gguf_tensor_in t[2] = {{"a", TUNA_F32, 2, {2, 16}, v}, {"b", TUNA_F32, 1, {32}, v}};
    tuna_gguf_value kv[2] = {{.key = "s", .type = TUNA_GGUF_STRING, .str = "hello"},
                             {.key = "n", .type = TUNA_GGUF_UINT32, .u = 3}};
    return (unsigned char *)memfile(size, kv, 2, t, 2, NULL, NULL);
}

static tuna_status parse_copy(const unsigned char *b, size_t size) {
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, b, size);
    tuna_gguf g;
    tuna_error err = {0};
    tuna_status s = tuna_gguf_parse(copy, size, NULL, &g, &err);
    if (s == TUNA_OK) tuna_gguf_close(&g);
    else if (!err.message[0]) s = TUNA_ERR_INTERNAL; /* a refusal must say why */
    free(copy);
    return s;
}

TEST(hostile_files) {
    size_t size;
    unsigned char *b = small_file(&size);
    REQUIRE(b, "written");
    CHECK(parse_copy(b, size) == TUNA_OK, "the original parses");
    for (size_t n = 0; n < size; n++)
        if (n < size - 64 || n % 7 == 0) { /* every prefix through the tensor infos */
            tuna_status s = parse_copy(b, n);
            CHECK(s != TUNA_OK && s != TUNA_ERR_INTERNAL, "prefix of %zu bytes: %d", n, s);
        }
    /* offsets of fields in this file */
    size_t kv0 = 24, kv1 = kv0 + 8 + 1 + 4 + 8 + 5, kv2 = kv1 + 8 + 1 + 4 + 4;
    size_t align_value = kv2 + 8 + 17 + 4, t0 = align_value + 4;
    size_t t0_type = t0 + 8 + 1 + 4 + 16, t0_offset = t0_type + 4, t1 = t0_offset + 8;
    struct {
        size_t at;
        uint64_t value;
        size_t width;
        const char *what;
    } edits[] = {
        {0, 0x46554748, 4, "magic"},
        {4, 1, 4, "version 1"},
        {4, 4, 4, "version 4"},
        {8, UINT64_MAX, 8, "huge tensor count"},
        {16, UINT64_MAX / 2, 8, "huge kv count"},
        {kv0, UINT64_MAX, 8, "key length past the end"},
        {kv0, 0, 8, "empty key"},
        {kv0 + 9, 13, 4, "unknown value type"},
        {kv0 + 13, UINT64_MAX - 3, 8, "string length wraps"},
        {kv1 + 8, 's', 1, "duplicate key"},
        {kv1 + 9, TUNA_GGUF_BOOL, 4, "bool of value 3"},
        {align_value, 48, 4, "alignment not a power of two"},
        {align_value, 0, 4, "alignment 0"},
        {align_value, 1u << 30, 4, "alignment too large"},
        {kv2 + 8 + 17, TUNA_GGUF_UINT64, 4, "alignment not u32"},
        {t0 + 9, 0, 4, "0 dimensions"},
        {t0 + 9, 5, 4, "5 dimensions"},
        {t0 + 13, (uint64_t)1 << 62, 8, "dimension overflow"},
        {t0 + 13, 17, 8, "tensor past the end"},
        {t0_type, 3, 4, "ggml Q4_1: unsupported"},
        {t0_type, 8, 4, "Q8_0 with 16-element rows"},
        {t0_type, 999, 4, "unknown ggml type"},
        {t0_offset, 4, 8, "misaligned offset"},
        {t0_offset, 1u << 20, 8, "offset past the end"},
        {t0_offset, 128, 8, "overlaps b"},
        {t1 + 8, 'a', 1, "duplicate tensor name"},
        {t1, 0, 8, "empty tensor name"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        unsigned char *copy = malloc(size);
        memcpy(copy, b, size);
        for (size_t k = 0; k < edits[i].width; k++) copy[edits[i].at + k] = (unsigned char)(edits[i].value >> (8 * k));
        tuna_status s = parse_copy(copy, size);
        CHECK(s != TUNA_OK && s != TUNA_ERR_INTERNAL, "%s accepted (%d)", edits[i].what, s);
        free(copy);
    }
    /* nested arrays and arrays past the end */
    unsigned char arr[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
                           1, 0, 0, 0, 0, 0, 0, 0, 'a', TUNA_GGUF_ARRAY, 0, 0, 0, TUNA_GGUF_ARRAY, 0, 0, 0,
                           1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    CHECK(parse_copy(arr, sizeof arr) == TUNA_ERR_UNSUPPORTED, "nested array refused");
    arr[37] = TUNA_GGUF_UINT32;
    arr[41] = 0xff, arr[46] = 0x10;
    CHECK(parse_copy(arr, sizeof arr) == TUNA_ERR_FORMAT, "u32 array past the end");
    arr[37] = TUNA_GGUF_STRING;
    CHECK(parse_copy(arr, sizeof arr) == TUNA_ERR_FORMAT, "string array that cannot fit");
    arr[41] = 2, arr[46] = 0;
    CHECK(parse_copy(arr, sizeof arr) == TUNA_OK, "two empty strings then padding");
    free(b);
}

/* A model directory with model.gguf (and the file itself) opens through
 * tuna_checkpoint_open, and its string metadata is visible. */
TEST(checkpoint_gguf) {
    char dir[] = "/tmp/tuna-gguf-XXXXXX";
    REQUIRE(mkdtemp(dir), "tmpdir");
    char path[256];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    float v[64] = {0};
    v[3] = 3.0f;
    tuna_gguf_tensor_in t[2] = {{"tuna.model.norm.weight", TUNA_F32, 1, {64}, v}, {"x", TUNA_F32, 2, {2, 32}, v}};
    tuna_gguf_value kv[1] = {{.key = "general.architecture", .type = TUNA_GGUF_STRING, .str = "tuna2"}};
    tuna_error err = {0};
    REQUIRE(tuna_gguf_write(path, kv, 1, t, 2, NULL, NULL, &err) == TUNA_OK, "write: %s", err.message);
    for (int i = 0; i < 2; i++) {
        tuna_checkpoint *ck;
        REQUIRE(tuna_checkpoint_open(i ? path : dir, &ck, &err) == TUNA_OK, "open: %s", err.message);
        CHECK(strcmp(tuna_checkpoint_format(ck), "gguf") == 0, "format");
        CHECK(tuna_checkpoint_count(ck) == 2, "count");
        const tuna_tensor *n = tuna_checkpoint_find(ck, "tuna.model.norm.weight");
        CHECK(n && ((const float *)n->data)[3] == 3.0f, "tensor");
        const char *arch = tuna_checkpoint_metadata(ck, "general.architecture");
        CHECK(arch && strcmp(arch, "tuna2") == 0, "metadata");
        CHECK(!tuna_checkpoint_metadata(ck, "nope"), "absent metadata");
        CHECK(strcmp(tuna_checkpoint_dir(ck), dir) == 0, "dir");
        tuna_checkpoint_close(ck);
    }
    unlink(path);
    rmdir(dir);
}

/* ggml's own Python package reads our files and writes files we load
 * (tools/gguf_interop.py, with the `tuna` binary of this build). Its venv is
 * made by tools/setup_gguf_venv.sh (.ci/run does, and sets
 * TUNA_REQUIRE_INTEROP=1 so a missing venv fails there instead of skipping). */
TEST(interop_with_ggml_python) {
    const char *py = getenv("TUNA_GGUF_PYTHON");
    if (!py) py = "out/venv-gguf/bin/python";
    if (access(py, X_OK) != 0) {
        printf("  SKIP interop_with_ggml_python: no %s (run tools/setup_gguf_venv.sh; CI does)\n", py);
        CHECK(!getenv("TUNA_REQUIRE_INTEROP"), "TUNA_REQUIRE_INTEROP is set but %s is missing", py);
        return;
    }
    char exe[4096], cmd[8192];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0, "own path");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    REQUIRE(slash, "own directory");
    *slash = '\0'; /* BUILD/tests -> BUILD/tuna */
    snprintf(cmd, sizeof cmd, "%s tools/gguf_interop.py --tuna %s/../tuna > /tmp/tuna-gguf-interop.%d.log 2>&1", py, exe,
             (int)getpid());
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -20 /tmp/tuna-gguf-interop.%d.log >&2", (int)getpid());
        if (system(cmd) != 0) fprintf(stderr, "  (no log)\n");
    }
    CHECK(rc == 0, "tools/gguf_interop.py failed (status %d)", rc);
    snprintf(cmd, sizeof cmd, "/tmp/tuna-gguf-interop.%d.log", (int)getpid());
    unlink(cmd);
}

int main(void) {
    RUN(round_trip);
    RUN(byte_layout);
    RUN(streamed_fill);
    RUN(hostile_files);
    RUN(checkpoint_gguf);
    RUN(interop_with_ggml_python);
    return test_summary();
}
