/* torch.save files: exact reads (stored and deflated members, views sharing a
 * storage, every dtype), the {"model": ..., "step", "optimizer"} wrapper with
 * "tuna_model." keys, refusals (non-contiguous, forbidden globals, unknown
 * opcodes), hand-written pickles, truncation at every byte, and the CLI's exit
 * status on bad files. */
#include "test.h"
#include "io_test_util.h"
#include "io/checkpoint.h"
#include "io/pickle.h"
#include "io/pt.h"

#include <libgen.h>
#include <sys/wait.h>

static char tuna_binary[512] = "build/tuna";

static int compare_section(const tuna_pt *pt, const char *section, size_t *count) {
    cJSON *root = NULL;
    const cJSON *exp = load_expected(section, &root);
    int bad = exp ? 0 : 1000;
    *count = 0;
    for (const cJSON *e = exp ? exp->child : NULL; e; e = e->next, (*count)++)
        bad += compare_with_expected(e->string, tuna_pt_find(pt, e->string), e);
    cJSON_Delete(root);
    return bad;
}

TEST(reads_torch_save_exactly_stored_and_deflated) {
    const char *files[] = {IO_FIXTURES "state.pt", IO_FIXTURES "state_deflated.pt"};
    for (int i = 0; i < 2; i++) {
        tuna_pt pt;
        tuna_error err = {0};
        REQUIRE(tuna_pt_open(files[i], &pt, &err) == TUNA_OK, "%s: %s", files[i], err.message);
        size_t n;
        CHECK(compare_section(&pt, "flat", &n) == 0, "%s: values differ", files[i]);
        CHECK(pt.count == n, "%s: %zu tensors, expected %zu", files[i], pt.count, n);
        CHECK(!pt.unwrapped && !pt.prefix_stripped, "flat dict");
        CHECK((i == 0) == (pt.owned_count == 0), "stored members are views, deflated ones owned (%zu)", pt.owned_count);
        /* views sharing one storage point into the same buffer at their offsets */
        const tuna_tensor *head = tuna_pt_find(&pt, "view_head"), *mid = tuna_pt_find(&pt, "view_middle");
        CHECK(head && mid && (const float *)mid->data == (const float *)head->data + 5, "shared storage offsets");
        tuna_pt_close(&pt);
    }
}

TEST(unwraps_training_checkpoint_and_strips_prefix) {
    tuna_pt pt;
    tuna_error err = {0};
    REQUIRE(tuna_pt_open(IO_FIXTURES "wrapped.pt", &pt, &err) == TUNA_OK, "%s", err.message);
    size_t n;
    CHECK(compare_section(&pt, "wrapped", &n) == 0, "values differ");
    CHECK(pt.count == n && n == 3, "only the model's tensors (%zu), not the optimizer's", pt.count);
    CHECK(pt.unwrapped && pt.prefix_stripped, "flags");
    CHECK(tuna_pt_find(&pt, "proj.weight") != NULL, "prefix stripped");
    tuna_pt_close(&pt);
    /* and through the checkpoint API (file and directory forms) */
    tuna_checkpoint *ck;
    REQUIRE(tuna_checkpoint_open(IO_FIXTURES "wrapped.pt", &ck, &err) == TUNA_OK, "%s", err.message);
    CHECK(strcmp(tuna_checkpoint_format(ck), "pt") == 0 && tuna_checkpoint_count(ck) == 3, "checkpoint api");
    CHECK(tuna_checkpoint_find(ck, "norm.weight") != NULL, "find");
    tuna_checkpoint_close(ck);
    CHECK(tuna_checkpoint_open(IO_FIXTURES, &ck, &err) != TUNA_OK && strstr(err.message, "several"),
          "a directory with several .pt files is ambiguous: %s", err.message);
}

static tuna_status open_fixture(const char *name, tuna_error *err) {
    char path[256];
    snprintf(path, sizeof path, IO_FIXTURES "%s", name);
    tuna_pt pt;
    tuna_status s = tuna_pt_open(path, &pt, err);
    if (s == TUNA_OK) tuna_pt_close(&pt);
    return s;
}

TEST(refuses_hostile_and_unsupported_files) {
    static const struct { const char *file, *message; } cases[] = {
        {"noncontig.pt", "not contiguous"},
        {"evil_os_system.pt", "refusing global os.system"},
        {"evil_eval.pt", "refusing global builtins.eval"},
        {"evil_opcode.pt", "NEWOBJ"},
        {"state.safetensors", "not a zip"},
        {"expected.json", "not a zip"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tuna_error err = {0};
        CHECK(open_fixture(cases[i].file, &err) != TUNA_OK, "%s accepted", cases[i].file);
        CHECK(strstr(err.message, cases[i].message) != NULL, "%s: \"%s\" lacks \"%s\"", cases[i].file, err.message,
              cases[i].message);
    }
}

static tuna_status unpickle(const char *bytes, size_t n, tuna_error *err) {
    tuna_pickle *pk;
    const tuna_pk_object *root;
    tuna_status s = tuna_pickle_load(bytes, n, &pk, &root, err);
    if (s == TUNA_OK) tuna_pickle_free(pk);
    return s;
}

TEST(hand_written_pickles) {
#define P(s) s, sizeof(s) - 1
    static const struct { const char *bytes; size_t n; const char *message; } bad[] = {
        {P("\x80\x02" "cos\nsystem\n" "X\x02\x00\x00\x00ls\x85R."), "os.system"},
        {P("\x80\x04\x8c\x08" "builtins\x8c\x04" "exec\x93."), "builtins.exec"},
        {P("\x80\x02" "cposix\nsystem\n."), "posix.system"},
        {P("\x80\x02" "ctorch\nload\n."), "torch.load"},
        {P("\x80\x02" "cbuiltins\ngetattr\n."), "getattr"},
        {P("\x80\x02}q\x00\x81."), "NEWOBJ"},
        {P("\x80\x02" "I1\n."), "INT"},
        {P("\x80\x02\xff."), "unknown"},
        {P("\x80\x06}."), "protocol"},
        {P("\x80\x02}"), "without STOP"},
        {P("\x80\x02."), "underflow"},
        {P("\x80\x02t."), "MARK"},
        {P("\x80\x02}r\xff\xff\xff\x7f."), "memo index"},
        {P("\x80\x02h\x05."), "memo index"},
        {P("\x80\x02}X\x01\x00\x00\x00" "aK\x01\x86s."), "underflow"},
        {P("\x80\x02]X\x01\x00\x00\x00" "aK\x01s."), "not a dict"},
        {P("\x80\x02}K\x01" "a."), "not a list"},
        {P("\x80\x02X\xff\xff\xff\x7f" "a."), "truncated"},
        {P("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."), "64 bits"},
        {P("\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."), "arguments"},
        {P("\x80\x02" "ctorch\nFloatStorage\n)R."), "storage type"},
        {P("\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x03\x00\x00\x00../X\x03\x00\x00\x00" "cpuK\x01tQ."),
         "storage key"},
        {P("\x80\x02(X\x07\x00\x00\x00storageK\x01X\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ."), "storage type"},
        {P("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\nK\x01\x85R."), "6 or 7"},
        {P("\x80\x02]N" "b."), "BUILD"},
    };
#undef P
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tuna_error err = {0};
        CHECK(unpickle(bad[i].bytes, bad[i].n, &err) != TUNA_OK, "case %zu accepted", i);
        CHECK(strstr(err.message, bad[i].message) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, err.message, bad[i].message);
    }
    /* valid: a dict with nested list/tuple/float/int/bool/None, memo reuse, LONG1 negative */
    static const char good[] = "\x80\x02}q\x00(X\x01\x00\x00\x00" "a]q\x01(K\x01J\xff\xff\xff\xff" "G?\xf8\x00\x00\x00\x00\x00\x00"
                               "\x88\x89N\x8a\x02\x00\x80" "eX\x01\x00\x00\x00" "bh\x01u.";
    tuna_pickle *pk;
    const tuna_pk_object *root;
    tuna_error err = {0};
    REQUIRE(tuna_pickle_load(good, sizeof good - 1, &pk, &root, &err) == TUNA_OK, "%s", err.message);
    const tuna_pk_object *a = tuna_pk_dict_get(root, "a"), *b = tuna_pk_dict_get(root, "b");
    CHECK(a && a->type == TUNA_PK_LIST && a->u.seq.count == 7, "list");
    CHECK(a == b, "memo shares the object");
    if (a && a->type == TUNA_PK_LIST && a->u.seq.count == 7) {
        CHECK(a->u.seq.items[0]->u.integer == 1 && a->u.seq.items[1]->u.integer == -1, "ints");
        CHECK(a->u.seq.items[2]->u.real == 1.5, "float");
        CHECK(a->u.seq.items[3]->u.boolean == 1 && a->u.seq.items[4]->u.boolean == 0, "bools");
        CHECK(a->u.seq.items[5]->type == TUNA_PK_NONE, "none");
        CHECK(a->u.seq.items[6]->u.integer == -32768, "LONG1");
    }
    tuna_pickle_free(pk);
    /* LONG1 sign extension: 0x8000 as 2 bytes is -32768 */
    static const char neg[] = "\x80\x02\x8a\x02\x00\x80.";
    REQUIRE(tuna_pickle_load(neg, sizeof neg - 1, &pk, &root, &err) == TUNA_OK, "%s", err.message);
    CHECK(root->type == TUNA_PK_INT && root->u.integer == -32768, "LONG1 %lld", (long long)root->u.integer);
    tuna_pickle_free(pk);
}

TEST(truncation_at_every_byte_is_an_error) {
    const char *files[] = {IO_FIXTURES "state.pt", IO_FIXTURES "state_deflated.pt", IO_FIXTURES "wrapped.pt"};
    for (size_t f = 0; f < 3; f++) {
        size_t size;
        unsigned char *data = read_whole(files[f], &size);
        REQUIRE(data, "%s", files[f]);
        int accepted = 0;
        for (size_t n = 0; n < size; n++) {
            unsigned char *copy = malloc(n ? n : 1);
            memcpy(copy, data, n);
            tuna_pt pt;
            if (tuna_pt_parse(copy, n, "t", &pt, NULL) == TUNA_OK) { accepted++; tuna_pt_close(&pt); }
            free(copy);
        }
        CHECK(accepted == 0, "%s: %d truncations accepted", files[f], accepted);
        free(data);
    }
}

TEST(byte_flips_never_crash) {
    const char *files[] = {IO_FIXTURES "state.pt", IO_FIXTURES "state_deflated.pt"};
    for (size_t f = 0; f < 2; f++) {
        size_t size;
        unsigned char *data = read_whole(files[f], &size);
        REQUIRE(data, "%s", files[f]);
        for (size_t i = 0; i < size; i++) {
            unsigned char *copy = malloc(size);
            memcpy(copy, data, size);
            copy[i] ^= (unsigned char)(i & 1 ? 0xff : 0x01);
            tuna_pt pt;
            if (tuna_pt_parse(copy, size, "t", &pt, NULL) == TUNA_OK) tuna_pt_close(&pt);
            free(copy);
        }
        free(data);
    }
}

TEST(bad_zip_directories) {
    size_t size;
    unsigned char *data = read_whole(IO_FIXTURES "state.pt", &size);
    REQUIRE(data && size > 100, "fixture");
    /* find the end-of-central-directory record and corrupt its fields one by one */
    size_t eocd = size;
    for (size_t p = size - 22 + 1; p-- > 0;)
        if (data[p] == 0x50 && data[p + 1] == 0x4b && data[p + 2] == 5 && data[p + 3] == 6) { eocd = p; break; }
    REQUIRE(eocd < size, "no EOCD");
    static const struct { size_t offset; unsigned char value; } edits[] = {
        {16, 0xff}, {17, 0xff}, {12, 0xff}, {10, 0x00}, {8, 0x00}, {4, 0x01}, {20, 0x05},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        unsigned char *copy = malloc(size);
        memcpy(copy, data, size);
        copy[eocd + edits[i].offset] = edits[i].value;
        /* torch writes zip64 records: corrupt the zip64 EOCD offset in the locator too */
        tuna_pt pt;
        tuna_error err = {0};
        /* zip64 archives ignore some of these 32-bit fields: only "no crash" is required */
        if (tuna_pt_parse(copy, size, "t", &pt, &err) == TUNA_OK) tuna_pt_close(&pt);
        free(copy);
    }
    /* a zip with no data.pkl */
    tuna_error err = {0};
    unsigned char empty_zip[22] = {0x50, 0x4b, 5, 6};
    tuna_pt pt;
    CHECK(tuna_pt_parse(empty_zip, sizeof empty_zip, "t", &pt, &err) != TUNA_OK && strstr(err.message, "data.pkl"),
          "empty zip: %s", err.message);
    /* central directory pointing past the end */
    unsigned char bad_cd[22] = {0x50, 0x4b, 5, 6, 0, 0, 0, 0, 1, 0, 1, 0, 46, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    CHECK(tuna_pt_parse(bad_cd, sizeof bad_cd, "t", &pt, &err) != TUNA_OK && strstr(err.message, "out of range"),
          "bad cd: %s", err.message);
    free(data);
}

static int run_cli(const char *args) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s inspect %s >/dev/null 2>&1", tuna_binary, args);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(cli_inspect_exit_status) {
    CHECK(run_cli(IO_FIXTURES "evil_os_system.pt") == 1, "hostile pickle must exit 1");
    CHECK(run_cli(IO_FIXTURES "noncontig.pt") == 1, "non-contiguous must exit 1");
    CHECK(run_cli(IO_FIXTURES "does_not_exist.pt") == 1, "missing file must exit 1");
    CHECK(run_cli("") == 2, "usage error exits 2");
    CHECK(run_cli(IO_FIXTURES "tiny") == 0, "tiny model inspects fine");
    CHECK(run_cli(IO_FIXTURES "state.pt") == 0, "a plain state dict lists fine");
}

int main(int argc, char **argv) {
    (void)argc;
    /* the tuna binary sits beside tests/: BUILD/tests/test_pt -> BUILD/tuna */
    char copy[512];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(tuna_binary, sizeof tuna_binary, "%s/../tuna", dirname(copy));
    RUN(reads_torch_save_exactly_stored_and_deflated);
    RUN(unwraps_training_checkpoint_and_strips_prefix);
    RUN(refuses_hostile_and_unsupported_files);
    RUN(hand_written_pickles);
    RUN(truncation_at_every_byte_is_an_error);
    RUN(byte_flips_never_crash);
    RUN(bad_zip_directories);
    RUN(cli_inspect_exit_status);
    return test_summary();
}
