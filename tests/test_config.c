/* config.json (SPEC section 8): strict parsing at every nesting level, the
 * writer's round trip, shape verification against a checkpoint (first
 * mismatch by name), and the official-7B fallback when config.json is absent
 * (checked on a sparse 25 GB safetensors file with the official shapes). */
#include "test.h"
#include "io_test_util.h"
#include "io/checkpoint.h"
#include "model/config_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define TINY IO_FIXTURES "tiny/config.json"

/* tiny/config.json edited by fn, then parsed by our parser. */
static tuna_status parse_edited(void (*edit)(cJSON *root), tuna_config *c, tuna_error *err) {
    size_t size;
    unsigned char *text = read_whole(TINY, &size);
    cJSON *root = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    edit(root);
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    tuna_status s = tuna_config_parse_json(json, strlen(json), c, err);
    free(json);
    return s;
}

TEST(parses_tiny_config) {
    tuna_config c;
    tuna_error err = {0};
    REQUIRE(tuna_config_load(TINY, &c, &err) == TUNA_OK, "%s", err.message);
    CHECK(c.vocab_size == 32 && c.hidden_size == 16, "sizes");
    CHECK(c.llm.num_layers == 2 && c.llm.num_heads == 2 && c.llm.num_kv_heads == 1 && c.llm.head_dim == 8, "llm");
    CHECK(c.llm.rope_theta == 1e6 && c.llm.rms_norm_eps == 1e-6 && !c.llm.tie_word_embeddings, "llm numbers");
    CHECK(c.head.num_layers == 2 && c.head.head_dim == 16 && c.head.intermediate_size == 24, "head");
    CHECK(c.head.has_text_rope_scaling && c.head.text_rope_scaling.factor == 32 &&
          c.head.text_rope_scaling.original_max_position_embeddings == 8192, "rope scaling");
    CHECK(c.patch_norm_eps_is_machine_eps, "patch_norm_eps null");
    CHECK(c.patch_size == 2 && c.image_channels == 3 && c.time_freq_dim == 8, "patch");
    CHECK(c.noise_scale == 2.0 && c.t_eps == 0.05, "flow");
    CHECK(c.tokens.bos == 1 && c.tokens.pad == 6, "tokens");
}

TEST(spec_example_parses_to_official_values) {
    /* the JSON block of SPEC section 8 is the official configuration */
    size_t size;
    unsigned char *spec = read_whole("fuzz/seeds-config/spec.json", &size);
    REQUIRE(spec, "fuzz/seeds-config/spec.json");
    tuna_config c, official;
    tuna_error err = {0};
    CHECK(tuna_config_parse_json((const char *)spec, size, &c, &err) == TUNA_OK, "%s", err.message);
    free(spec);
    tuna_config_official_7b(&official);
    CHECK(memcmp(&c, &official, sizeof c) == 0, "SPEC JSON differs from tuna_config_official_7b");
}

TEST(writer_round_trip) {
    tuna_config configs[2];
    tuna_error err = {0};
    tuna_config_official_7b(&configs[0]);
    REQUIRE(tuna_config_load(TINY, &configs[1], &err) == TUNA_OK, "%s", err.message);
    configs[1].patch_norm_eps_is_machine_eps = 0;
    configs[1].patch_norm_eps = 1.0 / 3.0;
    configs[1].head.has_text_rope_scaling = 0;
    memset(&configs[1].head.text_rope_scaling, 0, sizeof configs[1].head.text_rope_scaling);
    for (int i = 0; i < 2; i++) {
        const char *path = "build/test_config_roundtrip.json";
        REQUIRE(tuna_config_save(path, &configs[i], &err) == TUNA_OK, "%s", err.message);
        tuna_config back;
        REQUIRE(tuna_config_load(path, &back, &err) == TUNA_OK, "%s", err.message);
        CHECK(memcmp(&back, &configs[i], sizeof back) == 0, "config %d differs after a round trip", i);
        unlink(path);
    }
}

static void add_unknown_top(cJSON *r) { cJSON_AddNumberToObject(r, "bogus", 1); }
static void add_unknown_llm(cJSON *r) { cJSON_AddNumberToObject(cJSON_GetObjectItem(r, "llm"), "rope_scaling", 1); }
static void add_unknown_head(cJSON *r) { cJSON_AddNumberToObject(cJSON_GetObjectItem(r, "head"), "bias", 1); }
static void add_unknown_scaling(cJSON *r) {
    cJSON_AddStringToObject(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "head"), "text_rope_scaling"), "rope_type", "llama3");
}
static void add_unknown_tokens(cJSON *r) { cJSON_AddNumberToObject(cJSON_GetObjectItem(r, "tokens"), "unk", 0); }
static void vocab_string(cJSON *r) { cJSON_ReplaceItemInObject(r, "vocab_size", cJSON_CreateString("32")); }
static void vocab_fraction(cJSON *r) { cJSON_ReplaceItemInObject(r, "vocab_size", cJSON_CreateNumber(32.5)); }
static void vocab_negative(cJSON *r) { cJSON_ReplaceItemInObject(r, "vocab_size", cJSON_CreateNumber(-32)); }
static void tie_number(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "llm"), "tie_word_embeddings", cJSON_CreateNumber(0)); }
static void llm_array(cJSON *r) { cJSON_ReplaceItemInObject(r, "llm", cJSON_CreateArray()); }
static void eps_string(cJSON *r) { cJSON_ReplaceItemInObject(r, "patch_norm_eps", cJSON_CreateString("1e-6")); }
static void eps_zero(cJSON *r) { cJSON_ReplaceItemInObject(r, "patch_norm_eps", cJSON_CreateNumber(0)); }
static void missing_hidden(cJSON *r) { cJSON_DeleteItemFromObject(r, "hidden_size"); }
static void missing_head_dim(cJSON *r) { cJSON_DeleteItemFromObject(cJSON_GetObjectItem(r, "head"), "head_dim"); }
static void duplicate_key(cJSON *r) { cJSON_AddNumberToObject(r, "patch_size", 2); }
static void wrong_arch(cJSON *r) { cJSON_ReplaceItemInObject(r, "architecture", cJSON_CreateString("qwen2")); }
static void bad_kv_heads(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "llm"), "num_kv_heads", cJSON_CreateNumber(3)); }
static void bad_head_dim(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "head"), "head_dim", cJSON_CreateNumber(24)); }
static void token_out_of_vocab(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "tokens"), "pad", cJSON_CreateNumber(32)); }
static void zero_layers(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "llm"), "num_layers", cJSON_CreateNumber(0)); }
static void huge_vocab(cJSON *r) { cJSON_ReplaceItemInObject(r, "vocab_size", cJSON_CreateNumber(4e18)); }

static void eps_value(cJSON *r) { cJSON_ReplaceItemInObject(r, "patch_norm_eps", cJSON_CreateNumber(1e-6)); }
static void no_scaling(cJSON *r) { cJSON_DeleteItemFromObject(cJSON_GetObjectItem(r, "head"), "text_rope_scaling"); }
static void null_scaling(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "head"), "text_rope_scaling", cJSON_CreateNull()); }
static void no_arch(cJSON *r) { cJSON_DeleteItemFromObject(r, "architecture"); }

TEST(strict_parsing_at_every_level) {
    static const struct { void (*edit)(cJSON *); const char *message; } bad[] = {
        {add_unknown_top, "unknown key \"bogus\" in the top level"},
        {add_unknown_llm, "unknown key \"rope_scaling\" in llm"},
        {add_unknown_head, "unknown key \"bias\" in head"},
        {add_unknown_scaling, "unknown key \"rope_type\" in head.text_rope_scaling"},
        {add_unknown_tokens, "unknown key \"unk\" in tokens"},
        {vocab_string, "vocab_size"}, {vocab_fraction, "vocab_size"}, {vocab_negative, "vocab_size"},
        {tie_number, "true or false"}, {llm_array, "llm must be an object"}, {eps_string, "patch_norm_eps"},
        {eps_zero, "patch_norm_eps"}, {missing_hidden, "missing key \"hidden_size\""},
        {missing_head_dim, "missing key \"head_dim\" in head"}, {duplicate_key, "twice"}, {wrong_arch, "tuna2"},
        {bad_kv_heads, "multiple"}, {bad_head_dim, "16"}, {token_out_of_vocab, "vocabulary"},
        {zero_layers, "llm.num_layers"}, {huge_vocab, "vocab_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tuna_config c;
        tuna_error err = {0};
        CHECK(parse_edited(bad[i].edit, &c, &err) != TUNA_OK, "case %zu accepted", i);
        CHECK(strstr(err.message, bad[i].message) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, err.message, bad[i].message);
    }
    tuna_config c;
    tuna_error err = {0};
    CHECK(parse_edited(eps_value, &c, &err) == TUNA_OK && !c.patch_norm_eps_is_machine_eps && c.patch_norm_eps == 1e-6,
          "patch_norm_eps number: %s", err.message);
    CHECK(parse_edited(no_scaling, &c, &err) == TUNA_OK && !c.head.has_text_rope_scaling, "absent scaling: %s", err.message);
    CHECK(parse_edited(null_scaling, &c, &err) == TUNA_OK && !c.head.has_text_rope_scaling, "null scaling: %s", err.message);
    CHECK(parse_edited(no_arch, &c, &err) == TUNA_OK, "architecture optional: %s", err.message);
    CHECK(tuna_config_parse_json("[", 1, &c, &err) != TUNA_OK, "bad JSON");
    CHECK(tuna_config_parse_json("{}", 2, &c, &err) != TUNA_OK, "empty object");
}

TEST(config_for_tiny_checkpoint_and_mismatches) {
    tuna_checkpoint *ck;
    tuna_error err = {0};
    REQUIRE(tuna_checkpoint_open(IO_FIXTURES "tiny", &ck, &err) == TUNA_OK, "%s", err.message);
    tuna_config c;
    const char *source = NULL;
    CHECK(tuna_config_for_checkpoint(ck, &c, &source, &err) == TUNA_OK, "%s", err.message);
    CHECK(source && strcmp(source, "config.json") == 0, "source");
    CHECK(!tuna_checkpoint_is_official_7b(ck), "tiny is not official");
    size_t extra = 99;
    CHECK(tuna_config_verify_checkpoint(&c, ck, &extra, &err) == TUNA_OK && extra == 0, "verify: %s", err.message);
    tuna_config wrong = c;
    wrong.llm.intermediate_size = 25;
    CHECK(tuna_config_verify_checkpoint(&wrong, ck, NULL, &err) != TUNA_OK &&
          strstr(err.message, "tuna.model.layers.0.mlp.gate_proj.weight has shape [24, 16]"), "%s", err.message);
    wrong = c;
    wrong.head.num_layers = 3;
    CHECK(tuna_config_verify_checkpoint(&wrong, ck, NULL, &err) != TUNA_OK &&
          strstr(err.message, "lacks tensor diffusion_head_a.2."), "%s", err.message);
    wrong = c;
    wrong.llm.tie_word_embeddings = 1;
    CHECK(tuna_config_verify_checkpoint(&wrong, ck, &extra, &err) == TUNA_ERR_FORMAT &&
              strstr(err.message, "tuna.lm_head.weight"),
          "tied config, untied weights: the lm_head is an unexpected tensor (%s)", err.message);
    wrong = c;
    wrong.llm.num_layers = c.llm.num_layers - 1;
    CHECK(tuna_config_verify_checkpoint(&wrong, ck, NULL, &err) == TUNA_ERR_FORMAT &&
              strstr(err.message, "does not use") && strstr(err.message, "tuna.model.layers."),
          "fewer layers than the weights: refused (%s)", err.message);
    wrong = c;
    wrong.head.num_layers = c.head.num_layers - 1;
    CHECK(tuna_config_verify_checkpoint(&wrong, ck, NULL, &err) == TUNA_ERR_FORMAT &&
              strstr(err.message, "diffusion_head_a."),
          "fewer head blocks than the weights: refused (%s)", err.message);
    tuna_checkpoint_close(ck);
    /* the same weights without config.json: not official, so an error asking for it */
    REQUIRE(tuna_checkpoint_open(IO_FIXTURES "tiny/model.safetensors", &ck, &err) == TUNA_OK, "%s", err.message);
    tuna_checkpoint_close(ck);
    mkdir("build/test_config_noconfig", 0755);
    size_t size;
    unsigned char *data = read_whole(IO_FIXTURES "tiny/model.safetensors", &size);
    FILE *f = fopen("build/test_config_noconfig/model.safetensors", "wb");
    REQUIRE(data && f, "copy");
    fwrite(data, 1, size, f);
    fclose(f);
    free(data);
    REQUIRE(tuna_checkpoint_open("build/test_config_noconfig", &ck, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_config_for_checkpoint(ck, &c, NULL, &err) != TUNA_OK && strstr(err.message, "write a config.json"), "%s",
          err.message);
    tuna_checkpoint_close(ck);
    unlink("build/test_config_noconfig/model.safetensors");
    rmdir("build/test_config_noconfig");
}

/* A sparse safetensors file with every official tensor in BF16 (25 GB of
 * holes): the header is real, the data never touched. */
static int write_sparse_official(const char *path, const tuna_config *c) {
    tuna_expected_tensor *list;
    size_t n;
    if (tuna_config_expected_tensors(c, &list, &n, NULL) != TUNA_OK) return 0;
    size_t cap = n * 160 + 64, len = 0, offset = 0;
    char *header = malloc(cap);
    len += (size_t)snprintf(header + len, cap - len, "{");
    for (size_t i = 0; i < n; i++) {
        size_t bytes = 2;
        len += (size_t)snprintf(header + len, cap - len, "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[", i ? "," : "", list[i].name);
        for (int d = 0; d < list[i].ndim; d++) {
            bytes *= (size_t)list[i].shape[d];
            len += (size_t)snprintf(header + len, cap - len, d ? ",%lld" : "%lld", (long long)list[i].shape[d]);
        }
        len += (size_t)snprintf(header + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", offset, offset + bytes);
        offset += bytes;
    }
    len += (size_t)snprintf(header + len, cap - len, "}");
    free(list);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fd >= 0 && write(fd, n8, 8) == 8 && write(fd, header, len) == (ssize_t)len &&
             ftruncate(fd, (off_t)(8 + len + offset)) == 0;
    if (fd >= 0) close(fd);
    free(header);
    return ok;
}

TEST(official_7b_inferred_from_shapes) {
    tuna_config official;
    tuna_config_official_7b(&official);
    const char *dir = "build/test_config_official";
    mkdir(dir, 0755);
    const char *path = "build/test_config_official/model.safetensors";
    REQUIRE(write_sparse_official(path, &official), "cannot write a sparse file");
    tuna_checkpoint *ck;
    tuna_error err = {0};
    REQUIRE(tuna_checkpoint_open(dir, &ck, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_checkpoint_is_official_7b(ck), "official shapes not recognised");
    tuna_config c;
    const char *source = NULL;
    CHECK(tuna_config_for_checkpoint(ck, &c, &source, &err) == TUNA_OK, "%s", err.message);
    CHECK(memcmp(&c, &official, sizeof c) == 0 && source && strstr(source, "official"), "official values");
    int64_t params = 0;
    for (size_t i = 0; i < tuna_checkpoint_count(ck); i++) params += tuna_tensor_numel(tuna_checkpoint_tensor(ck, i));
    CHECK(params > 12400000000LL && params < 12800000000LL, "about 12.6B parameters: %lld", (long long)params);
    tuna_checkpoint_close(ck);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    RUN(parses_tiny_config);
    RUN(spec_example_parses_to_official_values);
    RUN(writer_round_trip);
    RUN(strict_parsing_at_every_level);
    RUN(config_for_tiny_checkpoint_and_mismatches);
    RUN(official_7b_inferred_from_shapes);
    return test_summary();
}
