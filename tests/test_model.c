/* The Tuna-2 model against the PyTorch reference (tools/reference/tuna2_ref.py):
 * forward outputs and losses of four sequences, greedy decoding with the KV
 * cache, and 10-step generation and editing from the same initial noise. */
#include "test.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "infer/forward_batch.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "io/safetensors.h"
#include "model/forward.h"

#include <unistd.h>

#define FIXTURES "tests/fixtures/model/"

static tuna_threads pool;

static const float *f32(const tuna_safetensors *st, const char *name, int64_t *n) {
    const tuna_tensor *t = tuna_safetensors_find(st, name);
    if (!t || t->dtype != TUNA_F32) return NULL;
    if (n) *n = tuna_tensor_numel(t);
    return t->data;
}

/* Compare every non-gradient tensor of the expected result with ours. */
static void compare_results(const char *expected_path, const char *actual_path, double tolerance, int grads) {
    tuna_safetensors expected, actual;
    tuna_error err = {0};
    REQUIRE(tuna_safetensors_open(expected_path, &expected, &err) == TUNA_OK, "%s", err.message);
    if (tuna_safetensors_open(actual_path, &actual, &err) != TUNA_OK) {
        CHECK(0, "%s", err.message);
        tuna_safetensors_close(&expected);
        return;
    }
    int compared = 0;
    for (size_t i = 0; i < expected.count; i++) {
        const char *name = expected.entries[i].name;
        if ((!grads && strncmp(name, "grad.", 5) == 0) || strncmp(name, "debug.", 6) == 0) continue;
        int64_t n_expected = 0, n_actual = 0;
        const float *e = f32(&expected, name, &n_expected), *a = f32(&actual, name, &n_actual);
        CHECK(a != NULL, "%s: result lacks %s", actual_path, name);
        if (!a || !e) continue;
        CHECK(n_expected == n_actual, "%s: %lld vs %lld elements", name, (long long)n_expected, (long long)n_actual);
        if (n_expected != n_actual) continue;
        double rel = test_max_relative_error(a, e, n_expected);
        int is_grad = strncmp(name, "grad.", 5) == 0;
        if (is_grad) {
            /* a gradient that is exactly zero in the reference must be zero here too */
            double max_ref = 0;
            for (int64_t j = 0; j < n_expected; j++) max_ref = fmax(max_ref, fabs(e[j]));
            if (max_ref == 0) rel = test_max_relative_error(e, a, n_expected) == 0 ? 0 : 1;
        }
        CHECK(rel < tolerance, "%s %s: relative error %.3g", expected_path, name, rel);
        compared++;
    }
    CHECK(compared >= 3, "only %d tensors compared", compared);
    tuna_safetensors_close(&expected);
    tuna_safetensors_close(&actual);
}

/* convert: 0 keeps the checkpoint's dtypes, else the dtype every matrix is converted to (--dtype). */
static void forward_case_as(const char *model_dir, const char *name, double tolerance, int with_grads,
                            tuna_dtype convert) {
    char batch_path[256], expected_path[256], out_path[64];
    snprintf(batch_path, sizeof batch_path, FIXTURES "batch_%s.safetensors", name);
    snprintf(expected_path, sizeof expected_path, FIXTURES "result_%s.safetensors", name);
    snprintf(out_path, sizeof out_path, "/tmp/tuna_test_result_%d_%s.safetensors", (int)getpid(), name);
    tuna_model model;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(model_dir, &model, &err) == TUNA_OK, "%s", err.message);
    if (convert && tuna_model_set_weight_dtype(&model, convert, &err) != TUNA_OK) {
        CHECK(0, "convert: %s", err.message);
        tuna_model_free(&model);
        return;
    }
    tuna_forward_batch batch;
    if (tuna_forward_batch_open(batch_path, model.config.image_channels, &batch, &err) != TUNA_OK) {
        CHECK(0, "%s", err.message);
        tuna_model_free(&model);
        return;
    }
    tuna_status s = tuna_forward_batch_run(&model, &batch, &pool, out_path, with_grads, &err);
    CHECK(s == TUNA_OK, "%s: %s", name, err.message);
    if (s == TUNA_OK) compare_results(expected_path, out_path, tolerance, with_grads);
    unlink(out_path);
    tuna_forward_batch_close(&batch);
    tuna_model_free(&model);
}

static void forward_case(const char *model_dir, const char *name, double tolerance, int with_grads) {
    forward_case_as(model_dir, name, tolerance, with_grads, 0);
}

TEST(forward_understanding_matches_reference) { forward_case(FIXTURES "tiny", "und", 1e-4, 0); }
TEST(forward_text_to_image_with_masked_patches) { forward_case(FIXTURES "tiny", "t2i", 1e-4, 0); }
TEST(forward_edit_two_image_sizes) { forward_case(FIXTURES "tiny", "edit", 1e-4, 0); }
TEST(forward_text_only) { forward_case(FIXTURES "tiny", "text", 1e-4, 0); }
TEST(forward_from_pytorch_pt_checkpoint) { forward_case(FIXTURES "tiny_pt", "edit", 1e-4, 0); }
/* bf16 weights: the same model rounded to bf16, so only close to the f32 results */
TEST(forward_bf16_weights_close_to_f32) { forward_case(FIXTURES "tiny_bf16", "t2i", 5e-2, 0); }
/* --dtype bf16 on the f32 fixture rounds every matrix exactly as the bf16
 * fixture was written (torch's round to nearest even), and its forward stays
 * within the bf16 tolerance of the f32 reference. */
TEST(dtype_bf16_rounds_f32_weights_like_the_bf16_checkpoint) {
    forward_case_as(FIXTURES "tiny", "t2i", 5e-2, 0, TUNA_BF16);
    tuna_model rounded, shipped;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(FIXTURES "tiny", &rounded, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_model_set_weight_dtype(&rounded, TUNA_BF16, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_model_load(FIXTURES "tiny_bf16", &shipped, &err) == TUNA_OK, "%s", err.message);
    const tuna_tensor *pairs[][2] = {
        {rounded.embed_tokens, shipped.embed_tokens},
        {rounded.lm_head, shipped.lm_head},
        {rounded.patch_weight, shipped.patch_weight},
        {rounded.llm_layers[0].q_weight, shipped.llm_layers[0].q_weight},
        {rounded.llm_layers[0].down_weight, shipped.llm_layers[0].down_weight},
        {rounded.head_blocks[0].modulation_weight, shipped.head_blocks[0].modulation_weight},
        {rounded.final_layer.linear_weight, shipped.final_layer.linear_weight},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const tuna_tensor *a = pairs[i][0], *b = pairs[i][1];
        CHECK(a->dtype == TUNA_BF16 && b->dtype == TUNA_BF16, "pair %zu: dtypes %d %d", i, a->dtype, b->dtype);
        CHECK(tuna_tensor_numel(a) == tuna_tensor_numel(b) &&
                  memcmp(a->data, b->data, (size_t)tuna_tensor_numel(a) * 2) == 0,
              "pair %zu: rounded weights differ from the bf16 checkpoint's", i);
    }
    tuna_model_free(&rounded);
    tuna_model_free(&shipped);
}

/* --dtype f32 on the bf16 fixture widens exactly and runs the f32 (OpenBLAS) path. */
TEST(dtype_f32_widens_bf16_weights_exactly) {
    tuna_model model;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(FIXTURES "tiny_bf16", &model, &err) == TUNA_OK, "%s", err.message);
    const tuna_tensor *before = model.llm_layers[0].gate_weight;
    int64_t n = tuna_tensor_numel(before);
    uint16_t *copy = malloc((size_t)n * 2);
    memcpy(copy, before->data, (size_t)n * 2);
    REQUIRE(tuna_model_set_weight_dtype(&model, TUNA_F32, &err) == TUNA_OK, "%s", err.message);
    const tuna_tensor *after = model.llm_layers[0].gate_weight;
    CHECK(after->dtype == TUNA_F32 && model.lm_head->dtype == TUNA_F32 && model.patch_weight->dtype == TUNA_F32,
          "not all matrices widened");
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += ((const float *)after->data)[i] != tuna_bf16_to_f32(copy[i]);
    CHECK(bad == 0, "%lld widened values differ", (long long)bad);
    CHECK(tuna_model_set_weight_dtype(&model, TUNA_I8, &err) == TUNA_ERR_INVALID, "int8 accepted");
    /* and back: a second conversion replaces (and frees) the first one's
     * matrices; bf16 -> f32 -> bf16 gives back the file's bits */
    REQUIRE(tuna_model_set_weight_dtype(&model, TUNA_BF16, &err) == TUNA_OK, "%s", err.message);
    const tuna_tensor *back = model.llm_layers[0].gate_weight;
    CHECK(back->dtype == TUNA_BF16 && memcmp(back->data, copy, (size_t)n * 2) == 0, "bf16 -> f32 -> bf16 changed the weights");
    CHECK(model.embed_tokens->dtype == TUNA_BF16 && model.lm_head->dtype == TUNA_BF16, "embeddings not converted back");
    free(copy);
    tuna_model_free(&model);
    forward_case_as(FIXTURES "tiny_bf16", "t2i", 5e-2, 0, TUNA_F32);
}

/* every parameter's gradient against PyTorch autograd (issue: training) */
TEST(gradients_understanding_match_autograd) { forward_case(FIXTURES "tiny", "und", 1e-4, 1); }
TEST(gradients_text_to_image_masked_match_autograd) { forward_case(FIXTURES "tiny", "t2i", 1e-4, 1); }
TEST(gradients_edit_two_sizes_match_autograd) { forward_case(FIXTURES "tiny", "edit", 1e-4, 1); }
TEST(gradients_text_only_match_autograd) { forward_case(FIXTURES "tiny", "text", 1e-4, 1); }

TEST(greedy_decode_with_kv_cache_matches_reference) {
    tuna_model model;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(FIXTURES "tiny", &model, &err) == TUNA_OK, "%s", err.message);
    tuna_safetensors fx;
    if (tuna_safetensors_open(FIXTURES "decode.safetensors", &fx, &err) != TUNA_OK) {
        CHECK(0, "%s", err.message);
        tuna_model_free(&model);
        return;
    }
    const tuna_tensor *ids_t = tuna_safetensors_find(&fx, "input_ids");
    const tuna_tensor *gen_t = tuna_safetensors_find(&fx, "generated");
    const tuna_tensor *img_t = tuna_safetensors_find(&fx, "images");
    int prompt = (int)ids_t->shape[0], steps = (int)gen_t->shape[0], V = model.config.vocab_size;
    int32_t ids[128];
    memcpy(ids, ids_t->data, sizeof(int32_t) * prompt);
    const float *images[1] = {img_t->data};
    float t[1] = {1.0f};
    int heights[1] = {(int)img_t->shape[2]}, widths[1] = {(int)img_t->shape[3]};
    tuna_sequence seq = {.ids = ids, .length = prompt, .image_count = 1, .images = images, .t = t};
    int found;
    REQUIRE(tuna_find_segments(ids, prompt, &model.config, 1, heights, widths, &seq.segments, &found, &err) == TUNA_OK,
            "%s", err.message);
    tuna_kv_cache cache;
    REQUIRE(tuna_kv_cache_init(&cache, &model.config, prompt + steps, 0, &err) == TUNA_OK, "%s", err.message);
    float *logits = malloc(sizeof(float) * V);
    tuna_forward_request rq = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = prompt,
                               .logits_mode = TUNA_LOGITS_LAST, .logits = logits};
    tuna_backend be = tuna_backend_cpu(&pool);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    CHECK(tuna_model_forward(&model, &rq, 1, &be, &ws, &err) == TUNA_OK, "%s", err.message);
    double rel = test_max_relative_error(logits, f32(&fx, "first_logits", NULL), V);
    CHECK(rel < 1e-4, "first logits relative error %.3g", rel);
    int mismatches = 0;
    const int32_t *expected = gen_t->data;
    for (int i = 0; i < steps; i++) {
        int next = tuna_sample_token(logits, V, NULL, NULL, NULL);
        if (next != expected[i]) mismatches++;
        ids[prompt + i] = expected[i]; /* continue on the reference path */
        seq.length = prompt + i + 1;
        rq.row_begin = prompt + i;
        rq.row_end = prompt + i + 1;
        if (tuna_model_forward(&model, &rq, 1, &be, &ws, &err) != TUNA_OK) {
            CHECK(0, "%s", err.message);
            break;
        }
    }
    CHECK(mismatches == 0, "%d of %d greedy tokens differ", mismatches, steps);
    CHECK(ws.grows == 1, "decode reuses the prefill's workspace (%d allocations)", ws.grows);
    tuna_workspace_free(&ws);
    free(logits);
    free(seq.segments);
    tuna_kv_cache_free(&cache);
    tuna_safetensors_close(&fx);
    tuna_model_free(&model);
}

static void generation_case(const char *name, int editing) {
    tuna_model model;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(FIXTURES "tiny", &model, &err) == TUNA_OK, "%s", err.message);
    char path[256];
    snprintf(path, sizeof path, FIXTURES "%s.safetensors", name);
    tuna_safetensors fx;
    if (tuna_safetensors_open(path, &fx, &err) != TUNA_OK) {
        CHECK(0, "%s", err.message);
        tuna_model_free(&model);
        return;
    }
    const tuna_tensor *cond = tuna_safetensors_find(&fx, "cond_ids"), *uncond = tuna_safetensors_find(&fx, "uncond_ids");
    const tuna_tensor *noise = tuna_safetensors_find(&fx, "noise"), *source = tuna_safetensors_find(&fx, "source");
    int64_t n;
    const float *expected = f32(&fx, "image", &n);
    float *z = malloc(sizeof(float) * n);
    memcpy(z, noise->data, sizeof(float) * n);
    tuna_generate_params p = {
        .cond_ids = cond->data, .cond_length = (int)cond->shape[0],
        .uncond_ids = uncond->data, .uncond_length = (int)uncond->shape[0],
        .height = (int)noise->shape[2], .width = (int)noise->shape[3],
        .steps = ((const int32_t *)tuna_safetensors_find(&fx, "steps")->data)[0],
        .cfg_scale = f32(&fx, "cfg_scale", NULL)[0],
    };
    if (editing) {
        p.source = source->data;
        p.source_height = (int)source->shape[2];
        p.source_width = (int)source->shape[3];
    }
    CHECK(tuna_generate(&model, &p, z, &pool, &err) == TUNA_OK, "%s", err.message);
    double max_abs = 0;
    for (int64_t i = 0; i < n; i++) max_abs = fmax(max_abs, fabs((double)z[i] - expected[i]));
    CHECK(max_abs < 1e-3, "%s: final image differs by %.3g", name, max_abs);
    free(z);
    tuna_safetensors_close(&fx);
    tuna_model_free(&model);
}

TEST(generation_10_steps_cfg_matches_reference) { generation_case("gen_t2i", 0); }
TEST(edit_10_steps_cfg_matches_reference) { generation_case("gen_edit", 1); }

TEST(bad_model_directory_is_an_error) {
    tuna_model model;
    tuna_error err = {0};
    CHECK(tuna_model_load("tests/fixtures/does-not-exist", &model, &err) != TUNA_OK, "missing dir accepted");
    CHECK(strlen(err.message) > 0, "no message");
}

int main(void) {
    tuna_threads_init(&pool, 2);
    RUN(forward_understanding_matches_reference);
    RUN(forward_text_to_image_with_masked_patches);
    RUN(forward_edit_two_image_sizes);
    RUN(forward_text_only);
    RUN(forward_from_pytorch_pt_checkpoint);
    RUN(forward_bf16_weights_close_to_f32);
    RUN(dtype_bf16_rounds_f32_weights_like_the_bf16_checkpoint);
    RUN(dtype_f32_widens_bf16_weights_exactly);
    RUN(gradients_understanding_match_autograd);
    RUN(gradients_text_to_image_masked_match_autograd);
    RUN(gradients_edit_two_sizes_match_autograd);
    RUN(gradients_text_only_match_autograd);
    RUN(greedy_decode_with_kv_cache_matches_reference);
    RUN(generation_10_steps_cfg_matches_reference);
    RUN(edit_10_steps_cfg_matches_reference);
    RUN(bad_model_directory_is_an_error);
    return test_summary();
}
