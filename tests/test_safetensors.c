/* safetensors: exact reads of files written by the Python `safetensors`
 * package, sharded checkpoints, write/read round trips, atomic writes, and a
 * hostile-input suite (truncation at every byte, hand-made corrupt headers). */
#include "test.h"
#include "io_test_util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

#include <stdint.h>
#include <unistd.h>

static int matches_expected_flat(const tuna_tensor *(*find)(const void *, const char *), const void *obj) {
    cJSON *root = NULL;
    const cJSON *flat = load_expected("flat", &root);
    int bad = flat ? 0 : 1000;
    for (const cJSON *e = flat ? flat->child : NULL; e; e = e->next) bad += compare_with_expected(e->string, find(obj, e->string), e);
    cJSON_Delete(root);
    return bad;
}

static const tuna_tensor *find_st(const void *st, const char *name) { return tuna_safetensors_find(st, name); }
static const tuna_tensor *find_ck(const void *ck, const char *name) { return tuna_checkpoint_find(ck, name); }

TEST(reads_python_written_file_exactly) {
    tuna_safetensors st;
    tuna_error err = {0};
    REQUIRE(tuna_safetensors_open(IO_FIXTURES "state.safetensors", &st, &err) == TUNA_OK, "%s", err.message);
    CHECK(st.count == 16, "count %zu", st.count);
    CHECK(matches_expected_flat(find_st, &st) == 0, "values differ");
    CHECK(st.header_size % 8 == 0, "python pads the header to 8 bytes");
    const char *format = tuna_safetensors_metadata_get(&st, "format");
    CHECK(format && strcmp(format, "pt") == 0, "metadata format");
    CHECK(tuna_safetensors_find(&st, "nope") == NULL, "absent name");
    /* zero copy: the data points into the mapping */
    const tuna_tensor *t = tuna_safetensors_find(&st, "f32");
    CHECK(t && (const unsigned char *)t->data > st.file.data && (const unsigned char *)t->data < st.file.data + st.file.size,
          "view into the mapping");
    tuna_safetensors_close(&st);
}

TEST(sharded_index_through_checkpoint_api) {
    tuna_error err = {0};
    const char *paths[] = {IO_FIXTURES "sharded", IO_FIXTURES "sharded/model.safetensors.index.json"};
    for (int i = 0; i < 2; i++) {
        tuna_checkpoint *ck;
        REQUIRE(tuna_checkpoint_open(paths[i], &ck, &err) == TUNA_OK, "%s: %s", paths[i], err.message);
        CHECK(strcmp(tuna_checkpoint_format(ck), "safetensors-sharded") == 0, "format %s", tuna_checkpoint_format(ck));
        CHECK(tuna_checkpoint_count(ck) == 16, "count");
        CHECK(matches_expected_flat(find_ck, ck) == 0, "values differ");
        for (size_t k = 1; k < tuna_checkpoint_count(ck); k++)
            CHECK(strcmp(tuna_checkpoint_name(ck, k - 1), tuna_checkpoint_name(ck, k)) < 0, "iteration sorted");
        tuna_checkpoint_close(ck);
    }
}

TEST(index_rejects_bad_weight_maps) {
    const char *bad[] = {
        "[]", "{}", "{\"weight_map\": []}", "{\"weight_map\": {\"a\": 3}}",
        "{\"weight_map\": {\"a\": \"../etc/passwd\"}}", "{\"weight_map\": {\"a\": \"x/y.safetensors\"}}",
        "{\"weight_map\": {\"a\": \"s1\", \"a\": \"s2\"}}", "{\"weight_map\": {}, \"extra\": 1}",
        "{\"weight_map\": {}, \"weight_map\": {}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tuna_safetensors_index index;
        tuna_error err = {0};
        CHECK(tuna_safetensors_index_parse(bad[i], strlen(bad[i]), "t", &index, &err) != TUNA_OK, "accepted %s", bad[i]);
    }
}

TEST(write_then_read_round_trip) {
    float a[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    uint16_t b[3] = {0x3f80, 0xc000, 0x7fc0};
    float strided_src[12];
    for (int i = 0; i < 12; i++) strided_src[i] = (float)i;
    tuna_tensor t[4];
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[2] = {3, 2}, sd[1] = {0};
    tuna_tensor_init_view(&t[0], TUNA_F32, 2, sa, a);
    tuna_tensor_init_view(&t[1], TUNA_BF16, 1, sb, b);
    /* a transposed view of a 2x6 matrix's first 3 columns x 2 rows: written row-major */
    tuna_tensor_init_view(&t[2], TUNA_F32, 2, sc, strided_src);
    t[2].stride[0] = 1;
    t[2].stride[1] = 6;
    tuna_tensor_init_view(&t[3], TUNA_I64, 1, sd, NULL);
    const char *names[4] = {"w.a", "b \"quoted\"\n", "strided", "empty"};
    const char *meta[] = {"format", "pt", "k\\", "v\"", NULL};
    const char *path = "build/test_safetensors_roundtrip.safetensors";
    tuna_error err = {0};
    REQUIRE(tuna_safetensors_write(path, t, names, 4, meta, &err) == TUNA_OK, "%s", err.message);
    tuna_safetensors st;
    REQUIRE(tuna_safetensors_open(path, &st, &err) == TUNA_OK, "%s", err.message);
    CHECK(st.header_size % 8 == 0, "header padded to 8");
    const tuna_tensor *r = tuna_safetensors_find(&st, "w.a");
    CHECK(r && r->dtype == TUNA_F32 && r->ndim == 2 && memcmp(r->data, a, sizeof a) == 0, "f32 round trip");
    r = tuna_safetensors_find(&st, "b \"quoted\"\n");
    CHECK(r && r->dtype == TUNA_BF16 && memcmp(r->data, b, sizeof b) == 0, "bf16 + escaped name");
    r = tuna_safetensors_find(&st, "strided");
    float want[6] = {0, 6, 1, 7, 2, 8};
    CHECK(r && memcmp(r->data, want, sizeof want) == 0, "strided tensor written row-major");
    r = tuna_safetensors_find(&st, "empty");
    CHECK(r && r->ndim == 1 && r->shape[0] == 0, "empty tensor");
    for (size_t i = 0; i < st.count; i++) /* the writer lays out by element size: all aligned */
        CHECK((uintptr_t)st.entries[i].tensor.data % tuna_dtype_size(st.entries[i].tensor.dtype) == 0, "%s misaligned",
              st.entries[i].name);
    const char *v = tuna_safetensors_metadata_get(&st, "k\\");
    CHECK(v && strcmp(v, "v\"") == 0, "escaped metadata");
    tuna_safetensors_close(&st);
    unlink(path);
}

TEST(atomic_write_keeps_old_file_on_failure) {
    const char *path = "build/test_safetensors_atomic.safetensors";
    float a[2] = {1, 2};
    tuna_tensor t[2];
    int64_t s[1] = {2};
    tuna_tensor_init_view(&t[0], TUNA_F32, 1, s, a);
    tuna_tensor_init_view(&t[1], TUNA_F32, 1, s, a);
    const char *names[2] = {"x", "x"};
    tuna_error err = {0};
    REQUIRE(tuna_safetensors_write(path, t, names, 1, NULL, &err) == TUNA_OK, "%s", err.message);
    size_t before_size;
    unsigned char *before = read_whole(path, &before_size);
    /* duplicate names: refused while writing the header, after the temp file exists */
    CHECK(tuna_safetensors_write(path, t, names, 2, NULL, &err) != TUNA_OK, "duplicate names accepted");
    CHECK(strstr(err.message, "twice") != NULL, "message: %s", err.message);
    size_t after_size;
    unsigned char *after = read_whole(path, &after_size);
    CHECK(before && after && before_size == after_size && memcmp(before, after, before_size) == 0, "old file changed");
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temp file left behind");
    free(before);
    free(after);
    unlink(path);
}

static int fails_at_every_truncation(const char *path) {
    size_t size;
    unsigned char *data = read_whole(path, &size);
    if (!data) return -1;
    int accepted = 0;
    for (size_t n = 0; n < size; n++) {
        unsigned char *copy = malloc(n ? n : 1); /* exact size so ASan sees any over-read */
        memcpy(copy, data, n);
        tuna_safetensors st;
        if (tuna_safetensors_parse(copy, n, "t", &st, NULL) == TUNA_OK) { accepted++; tuna_safetensors_close(&st); }
        free(copy);
    }
    tuna_safetensors st;
    int full_ok = tuna_safetensors_parse(data, size, "t", &st, NULL) == TUNA_OK;
    if (full_ok) tuna_safetensors_close(&st);
    free(data);
    return full_ok ? accepted : -2;
}

TEST(truncation_at_every_byte_is_an_error) {
    const char *files[] = {IO_FIXTURES "state.safetensors", IO_FIXTURES "sharded/model-00001-of-00002.safetensors",
                           IO_FIXTURES "sharded/model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < 3; i++) {
        int accepted = fails_at_every_truncation(files[i]);
        CHECK(accepted == 0, "%s: %d truncated prefixes accepted (or the full file refused: %d)", files[i], accepted, accepted);
    }
}

TEST(byte_flips_never_crash) {
    size_t size;
    unsigned char *data = read_whole(IO_FIXTURES "state.safetensors", &size);
    REQUIRE(data, "fixture");
    for (size_t i = 0; i < size; i++) {
        for (int k = 0; k < 3; k++) {
            unsigned char *copy = malloc(size);
            memcpy(copy, data, size);
            copy[i] = k == 0 ? 0xff : k == 1 ? 0x00 : (unsigned char)(copy[i] ^ 0x01);
            tuna_safetensors st;
            if (tuna_safetensors_parse(copy, size, "t", &st, NULL) == TUNA_OK) {
                for (size_t j = 0; j < st.count; j++) {
                    const unsigned char *p = st.entries[j].tensor.data;
                    CHECK(p >= copy && p + tuna_tensor_nbytes(&st.entries[j].tensor) <= copy + size, "tensor outside file");
                }
                tuna_safetensors_close(&st);
            }
            free(copy);
        }
    }
    free(data);
}

/* A file from a header string and data_len bytes of data. */
static tuna_status parse_made(const char *header, size_t data_len, uint64_t header_len_override, tuna_error *err) {
    size_t hl = strlen(header);
    size_t size = 8 + hl + data_len;
    unsigned char *buf = calloc(1, size);
    uint64_t n = header_len_override ? header_len_override : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, hl);
    tuna_safetensors st;
    tuna_status s = tuna_safetensors_parse(buf, size, "made", &st, err);
    if (s == TUNA_OK) tuna_safetensors_close(&st);
    free(buf);
    return s;
}

TEST(hand_made_corrupt_headers) {
    static const struct {
        const char *header;
        size_t data_len;
        uint64_t len_override;
        const char *message;
    } cases[] = {
        {"{}", 0, 1000, "past the end"},
        {"{}", 0, (uint64_t)1 << 40, "limit"},
        {"[1]", 0, 0, "start with"},
        {"{\"a\":1", 0, 0, "not valid JSON"},
        {"{} x", 0, 0, "after the JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, 0, "cover"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, 0, "cover"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[4,12]}}", 12, 0, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, "span"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0, "end before begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8, 0, "integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, 0, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, 0, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, 0, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}}", 8, 0, "non-negative"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "not supported"},
        {"{\"a\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "not a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8, 0, "unknown field"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "missing"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, 0, "begin, end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0, "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[4,8]}}", 8, 0, "twice"},
        {"{\"__metadata__\":{\"a\":1}}", 0, 0, "not a string"},
        {"{\"__metadata__\":[]}", 0, 0, "not an object"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, "twice"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, 0, "twice"},
        {"{\"a\":[]}", 0, 0, "not an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tuna_error err = {0};
        tuna_status s = parse_made(cases[i].header, cases[i].data_len, cases[i].len_override, &err);
        CHECK(s != TUNA_OK, "case %zu accepted: %s", i, cases[i].header);
        CHECK(s == TUNA_OK || strstr(err.message, cases[i].message), "case %zu: message \"%s\" lacks \"%s\"", i, err.message,
              cases[i].message);
    }
    /* and the valid forms next to them */
    tuna_error err = {0};
    CHECK(parse_made("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ", 8, 0, &err) == TUNA_OK, "%s", err.message);
    CHECK(parse_made("{\"z\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[0,0]},\"a\":{\"dtype\":\"F32\",\"shape\":[],"
                     "\"data_offsets\":[0,4]}}", 4, 0, &err) == TUNA_OK, "%s", err.message);
    CHECK(parse_made("{}", 0, 0, &err) == TUNA_OK, "empty file: %s", err.message);
}

int main(void) {
    RUN(reads_python_written_file_exactly);
    RUN(sharded_index_through_checkpoint_api);
    RUN(index_rejects_bad_weight_maps);
    RUN(write_then_read_round_trip);
    RUN(atomic_write_keeps_old_file_on_failure);
    RUN(truncation_at_every_byte_is_an_error);
    RUN(byte_flips_never_crash);
    RUN(hand_made_corrupt_headers);
    return test_summary();
}
