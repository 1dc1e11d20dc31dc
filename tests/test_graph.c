/* The one graph over the backend seam: the workspace's memory strategy, the
 * CPU backend against the kernels it wraps, and the graph's modes against
 * each other (requests stacked vs alone, the recorded training forward vs
 * the inference forward, a cached prefix vs the whole sequence). */
#include "test.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "model/forward.h"
#include "model/train_step.h"
#include "ops/backend.h"
#include "ops/workspace.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TINY "tests/fixtures/model/tiny"

TEST(workspace_is_sized_once_and_reused) {
    tuna_backend be = tuna_backend_cpu(NULL);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    tuna_error err = {0};
    void *p[3];
    /* first call: nothing reserved yet, every request gets its own chunk */
    REQUIRE(tuna_workspace_alloc(&ws, 3, 0, &p[0], &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_workspace_alloc(&ws, 1000, 1, &p[1], &err) == TUNA_OK, "%s", err.message);
    CHECK(((uintptr_t)p[0] % 64) == 0 && ((uintptr_t)p[1] % 64) == 0, "64-byte aligned");
    int zero = 1;
    for (int i = 0; i < 1000; i++) zero &= ((unsigned char *)p[1])[i] == 0;
    CHECK(zero, "zeroed request is zero");
    CHECK(ws.grows == 0 && ws.chunk_count == 2, "first call runs on chunks (%d, %d)", ws.grows, ws.chunk_count);
    /* second call of the same shape: one block of the peak, no chunk */
    tuna_workspace_reset(&ws);
    for (int i = 0; i < 2; i++) {
        REQUIRE(tuna_workspace_alloc(&ws, 3, 0, &p[0], &err) == TUNA_OK, "%s", err.message);
        REQUIRE(tuna_workspace_alloc(&ws, 1000, 0, &p[1], &err) == TUNA_OK, "%s", err.message);
        CHECK((char *)p[1] - (char *)p[0] == 64, "bump allocation inside the block");
        CHECK(ws.grows == 1 && ws.chunk_count == 0 && ws.capacity == 64 + 1024, "sized once (%d, %d, %zu)", ws.grows,
              ws.chunk_count, ws.capacity);
        tuna_workspace_reset(&ws);
    }
    /* a bigger call overflows once, then the block is resized to it */
    REQUIRE(tuna_workspace_alloc(&ws, 5000, 0, &p[2], &err) == TUNA_OK, "%s", err.message);
    CHECK(ws.chunk_count == 1, "overflow into a chunk");
    tuna_workspace_reset(&ws);
    REQUIRE(tuna_workspace_alloc(&ws, 5000, 0, &p[2], &err) == TUNA_OK, "%s", err.message);
    CHECK(ws.grows == 2 && ws.chunk_count == 0 && ws.capacity >= 5000, "grown to the new peak");
    CHECK(tuna_workspace_alloc(&ws, SIZE_MAX - 10, 0, &p[0], &err) == TUNA_ERR_LIMIT && p[0] == NULL,
          "absurd request refused: %s", err.message);
    tuna_workspace_free(&ws);
}

/* The seam adds nothing to the numbers: each entry equals its kernel bitwise. */
TEST(cpu_backend_entries_equal_their_kernels) {
    tuna_threads pool;
    tuna_threads_init(&pool, 2);
    tuna_backend be = tuna_backend_cpu(&pool);
    CHECK(tuna_backend_cpu_threads(&be) == &pool && strcmp(be.ops->name, "cpu") == 0, "cpu backend on its pool");
    enum { M = 5, K = 48, N = 24 };
    float x[M * K], w[N * K], bias[N], y1[M * N], y2[M * N], norm_w[K], n1[M * K], n2[M * K];
    tuna_rng rng;
    tuna_rng_seed(&rng, 11);
    tuna_rng_fill_normal(&rng, x, M * K, 0, 1);
    tuna_rng_fill_normal(&rng, w, N * K, 0, 1);
    tuna_rng_fill_normal(&rng, bias, N, 0, 1);
    tuna_rng_fill_normal(&rng, norm_w, K, 1, 0.1f);
    tuna_tensor weight;
    int64_t shape[2] = {N, K};
    tuna_tensor_init_view(&weight, TUNA_F32, 2, shape, w);
    tuna_error err = {0};
    REQUIRE(be.ops->matmul(&be, y1, x, &weight, bias, M, K, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_matmul_forward(y2, x, &weight, bias, M, K, &pool, &err) == TUNA_OK, "%s", err.message);
    CHECK(memcmp(y1, y2, sizeof y1) == 0, "matmul bitwise");
    be.ops->rmsnorm(&be, n1, NULL, x, norm_w, M, K, 1e-6f);
    tuna_rmsnorm_forward(n2, NULL, x, norm_w, M, K, 1e-6f, &pool);
    CHECK(memcmp(n1, n2, sizeof n1) == 0, "rmsnorm bitwise");
    float w1[64], m1[64], v1[64], g[64], w2[64], m2[64], v2[64];
    tuna_rng_fill_normal(&rng, w1, 64, 0, 1);
    tuna_rng_fill_normal(&rng, g, 64, 0, 1);
    memset(m1, 0, sizeof m1), memset(v1, 0, sizeof v1);
    memcpy(w2, w1, sizeof w1), memcpy(m2, m1, sizeof m1), memcpy(v2, v1, sizeof v1);
    tuna_adamw_scalars a = {0.999f, 0.1f, 0.95f, 0.05f, 1e-3f, 0.2f, 1e-8f};
    be.ops->adamw(&be, w1, m1, v1, g, 61, &a); /* 61: the vector loop and the scalar tail */
    tuna_adamw_update(w2, m2, v2, g, 61, &a);
    CHECK(memcmp(w1, w2, sizeof w1) == 0 && memcmp(m1, m2, sizeof m1) == 0, "adamw bitwise");
    CHECK(be.ops->sum_squares(&be, g, 61) == tuna_sum_squares(g, 61), "sum of squares bitwise");
}

/* ---- the graph on the tiny fixture model ------------------------------------- */

typedef struct {
    int32_t ids[64];
    int length;
    float image[3 * 16 * 16];
    const float *images[1];
    float t[1];
    tuna_sequence seq;
} t2i_example;

/* [BOS] 5 text tokens [BOI][t][4 patches][EOI][EOS]: a 16x16 image, patch 8. */
static int build_t2i(t2i_example *e, const tuna_config *c, uint64_t seed, float t) {
    memset(e, 0, sizeof *e);
    int n = 0;
    e->ids[n++] = c->tokens.bos;
    for (int i = 0; i < 5; i++) e->ids[n++] = (int32_t)((seed * 7 + (uint64_t)i * 13) % 100) + 1;
    e->ids[n++] = c->tokens.boi;
    for (int i = 0; i < 5; i++) e->ids[n++] = c->tokens.image_pad;
    e->ids[n++] = c->tokens.eoi;
    e->ids[n++] = c->tokens.eos;
    e->length = n;
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    tuna_rng_fill_normal(&rng, e->image, 3 * 16 * 16, 0, 1);
    e->images[0] = e->image;
    e->t[0] = t;
    int h[1] = {16}, w[1] = {16}, found = 0;
    e->seq = (tuna_sequence){.ids = e->ids, .length = n, .image_count = 1, .images = e->images, .t = e->t};
    return tuna_find_segments(e->ids, n, c, 1, h, w, &e->seq.segments, &found, NULL) == TUNA_OK ? 0 : 1;
}

enum { TINY_OUT = 8 * 8 * 3, MAX_ROWS = 64, TINY_VOCAB = 160 };

typedef struct {
    float logits[MAX_ROWS * TINY_VOCAB];
    float head_out[MAX_ROWS * TINY_OUT];
} outputs;

static tuna_status run_whole(const tuna_model *m, t2i_example *e, const tuna_backend *be, tuna_workspace *ws,
                             outputs *o, tuna_error *err) {
    tuna_kv_cache cache;
    TUNA_TRY(tuna_kv_cache_init(&cache, &m->config, e->length, 1, err));
    tuna_forward_request rq = {.sequence = &e->seq, .cache = &cache, .row_begin = 0, .row_end = e->length,
                               .run_head = 1, .logits_mode = TUNA_LOGITS_ALL, .logits = o->logits,
                               .head_out = o->head_out};
    tuna_status s = tuna_model_forward(m, &rq, 1, be, ws, err);
    tuna_kv_cache_free(&cache);
    return s;
}

TEST(stacked_requests_equal_each_alone) {
    tuna_model m;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(TINY, &m, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(m.config.vocab_size == TINY_VOCAB, "tiny fixture vocabulary");
    tuna_backend be = tuna_backend_cpu(NULL);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    static t2i_example a, b;
    static outputs alone[2], together[2];
    REQUIRE(build_t2i(&a, &m.config, 1, 0.3f) == 0 && build_t2i(&b, &m.config, 2, 0.8f) == 0, "segments");
    CHECK(run_whole(&m, &a, &be, &ws, &alone[0], &err) == TUNA_OK, "%s", err.message);
    CHECK(run_whole(&m, &b, &be, &ws, &alone[1], &err) == TUNA_OK, "%s", err.message);
    tuna_kv_cache cache[2];
    REQUIRE(tuna_kv_cache_init(&cache[0], &m.config, a.length, 1, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_kv_cache_init(&cache[1], &m.config, b.length, 1, &err) == TUNA_OK, "%s", err.message);
    tuna_forward_request rq[2];
    t2i_example *ex[2] = {&a, &b};
    for (int r = 0; r < 2; r++)
        rq[r] = (tuna_forward_request){.sequence = &ex[r]->seq, .cache = &cache[r], .row_begin = 0,
                                       .row_end = ex[r]->length, .run_head = 1, .logits_mode = TUNA_LOGITS_ALL,
                                       .logits = together[r].logits, .head_out = together[r].head_out};
    CHECK(tuna_model_forward(&m, rq, 2, &be, &ws, &err) == TUNA_OK, "%s", err.message);
    for (int r = 0; r < 2; r++) {
        double rl = test_max_relative_error(together[r].logits, alone[r].logits, (long)ex[r]->length * TINY_VOCAB);
        double rh = test_max_relative_error(together[r].head_out, alone[r].head_out, (long)ex[r]->length * TINY_OUT);
        CHECK(rl < 1e-6 && rh < 1e-6, "request %d stacked vs alone: logits %.3g, head %.3g", r, rl, rh);
        CHECK(cache[r].llm_length == ex[r]->length && cache[r].head_length == ex[r]->length, "caches advanced");
    }
    tuna_kv_cache_free(&cache[0]);
    tuna_kv_cache_free(&cache[1]);
    free(a.seq.segments);
    free(b.seq.segments);
    tuna_workspace_free(&ws);
    tuna_model_free(&m);
}

/* The Euler-step pattern: the text prefix once, then the segment rows over
 * the cache, equals the whole sequence in one pass. */
TEST(cached_prefix_then_segment_equals_whole_sequence) {
    tuna_model m;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(TINY, &m, &err) == TUNA_OK, "%s", err.message);
    tuna_backend be = tuna_backend_cpu(NULL);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    static t2i_example e;
    static outputs whole, split;
    REQUIRE(build_t2i(&e, &m.config, 3, 0.5f) == 0, "segments");
    CHECK(run_whole(&m, &e, &be, &ws, &whole, &err) == TUNA_OK, "%s", err.message);
    tuna_kv_cache cache;
    REQUIRE(tuna_kv_cache_init(&cache, &m.config, e.length, 1, &err) == TUNA_OK, "%s", err.message);
    int prefix = e.seq.segments[0].offset, end = prefix + e.seq.segments[0].length;
    tuna_forward_request first = {.sequence = &e.seq, .cache = &cache, .row_begin = 0, .row_end = prefix,
                                  .run_head = 1};
    CHECK(tuna_model_forward(&m, &first, 1, &be, &ws, &err) == TUNA_OK, "%s", err.message);
    for (int step = 0; step < 2; step++) { /* twice over the same prefix, as two Euler steps */
        tuna_forward_request seg = {.sequence = &e.seq, .cache = &cache, .row_begin = prefix, .row_end = end,
                                    .run_head = 1, .head_out = split.head_out};
        CHECK(tuna_model_forward(&m, &seg, 1, &be, &ws, &err) == TUNA_OK, "%s", err.message);
        tuna_kv_cache_truncate(&cache, prefix);
        double rel = test_max_relative_error(split.head_out, whole.head_out + (size_t)prefix * TINY_OUT,
                                             (long)(end - prefix) * TINY_OUT);
        CHECK(rel < 1e-5, "segment after a cached prefix, step %d: %.3g", step, rel);
    }
    int grows = ws.grows;
    tuna_forward_request seg = {.sequence = &e.seq, .cache = &cache, .row_begin = prefix, .row_end = end, .run_head = 1};
    CHECK(tuna_model_forward(&m, &seg, 1, &be, &ws, &err) == TUNA_OK, "%s", err.message);
    CHECK(ws.grows == grows, "a further step allocates nothing");
    tuna_forward_request bad = {.sequence = &e.seq, .cache = NULL, .row_begin = prefix, .row_end = end, .run_head = 1};
    CHECK(tuna_model_forward(&m, &bad, 1, &be, &ws, &err) == TUNA_ERR_INVALID, "rows after 0 without a cache refused");
    tuna_kv_cache_free(&cache);
    free(e.seq.segments);
    tuna_workspace_free(&ws);
    tuna_model_free(&m);
}

/* One forward serves both: the recorded training forward predicts what the
 * inference forward predicts, and its CE logits are the inference logits. */
TEST(training_forward_equals_inference_forward) {
    tuna_model m;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(TINY, &m, &err) == TUNA_OK, "%s", err.message);
    tuna_backend be = tuna_backend_cpu(NULL);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    static t2i_example e;
    static outputs inf;
    REQUIRE(build_t2i(&e, &m.config, 4, 0.6f) == 0, "segments");
    CHECK(run_whole(&m, &e, &be, &ws, &inf, &err) == TUNA_OK, "%s", err.message);
    static float x_pred[3 * 16 * 16], expected[3 * 16 * 16], target[3 * 16 * 16];
    tuna_unpatchify(expected, inf.head_out + (size_t)(e.seq.segments[0].offset + 1) * TINY_OUT, 3, 16, 16);
    /* labels on the text: CE of the inference logits, computed here by hand */
    int32_t labels[64];
    for (int i = 0; i < e.length; i++) labels[i] = i >= 1 && i <= 5 ? e.ids[i] : -100;
    double ce = 0;
    for (int i = 0; i + 1 < e.length; i++) {
        if (labels[i + 1] == -100) continue;
        const float *row = inf.logits + (size_t)i * TINY_VOCAB;
        double mx = row[0], sum = 0;
        for (int v = 1; v < TINY_VOCAB; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < TINY_VOCAB; v++) sum += exp(row[v] - mx);
        ce += mx + log(sum) - row[labels[i + 1]];
    }
    ce /= 5; /* labels on positions 1..5 */
    memset(target, 0, sizeof target);
    const float *targets[1] = {target};
    uint8_t flow[1] = {1};
    float *preds[1] = {x_pred};
    tuna_train_example ex = {.sequence = &e.seq, .labels = labels, .targets = targets, .flow_images = flow};
    tuna_losses losses;
    CHECK(tuna_model_loss_and_gradients(&m, NULL, &ex, 1.0f, preds, &be, &ws, &losses, &err) == TUNA_OK, "%s",
          err.message);
    CHECK(test_max_relative_error(x_pred, expected, 3 * 16 * 16) < 1e-6, "x_pred of the training forward");
    CHECK(losses.ce_tokens == 5 && fabs(losses.loss_ce - ce) < 1e-5 * fabs(ce), "CE %.7g vs %.7g", losses.loss_ce, ce);
    free(e.seq.segments);
    tuna_workspace_free(&ws);
    tuna_model_free(&m);
}

int main(void) {
    RUN(workspace_is_sized_once_and_reused);
    RUN(cpu_backend_entries_equal_their_kernels);
    RUN(stacked_requests_equal_each_alone);
    RUN(cached_prefix_then_segment_equals_whole_sequence);
    RUN(training_forward_equals_inference_forward);
    return test_summary();
}
