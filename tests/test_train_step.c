/* The training step on a micro model built in memory: every analytic gradient
 * against a central finite difference of the loss. */
#include "test.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "model/gradients.h"
#include "model/train_step.h"

static void micro_config(tuna_config *c) {
    tuna_config_official_7b(c);
    c->vocab_size = 32;
    c->hidden_size = 16;
    c->llm = (tuna_llm_config){.num_layers = 1, .num_heads = 2, .num_kv_heads = 1, .head_dim = 8,
                               .intermediate_size = 24, .rope_theta = 10000.0, .rms_norm_eps = 1e-6};
    c->head.num_layers = 1;
    c->head.num_heads = 2;
    c->head.num_kv_heads = 1;
    c->head.head_dim = 16;
    c->head.intermediate_size = 24;
    c->patch_size = 4;
    c->tokens = (tuna_special_tokens){.bos = 28, .eos = 29, .boi = 30, .eoi = 31, .image_pad = 27, .pad = 26};
}

/* Parameters live in a tuna_gradients store (same names and shapes), bound as a model. */
static const tuna_tensor *find_param(void *ctx, const char *name) { return tuna_gradients_find(ctx, name); }

static void fill_random(tuna_gradients *params, uint64_t seed) {
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    for (size_t i = 0; i < params->count; i++) {
        tuna_tensor *t = &params->tensors[i];
        int is_norm = strstr(params->list[i].name, "norm") != NULL;
        float std = t->ndim >= 2 ? 1.0f / sqrtf((float)t->shape[t->ndim - 1]) : 0.3f;
        tuna_rng_fill_normal(&rng, t->data, tuna_tensor_numel(t), is_norm ? 1.0f : 0.0f, std);
    }
}

typedef struct {
    int32_t ids[32], labels[32];
    float image[3 * 8 * 8], target[3 * 8 * 8], t[1];
    uint8_t mask[4], flow[1];
    const float *images[1], *targets[1];
    const uint8_t *masks[1];
    tuna_sequence seq;
    tuna_train_example ex;
    tuna_backend backend; /* the CPU backend, one thread */
} micro_example;

/* [BOS] 3 tokens [BOI][t][4 patches][EOI][EOS]: CE on the text, flow on the image, one patch masked. */
static int build_example(micro_example *e, const tuna_config *c) {
    int ids[] = {28, 5, 9, 14, 30, 27, 27, 27, 27, 27, 31, 29};
    int L = (int)(sizeof ids / sizeof ids[0]);
    for (int i = 0; i < L; i++) {
        e->ids[i] = ids[i];
        e->labels[i] = (i >= 1 && i <= 3) || i == L - 1 ? ids[i] : -100;
    }
    e->backend = tuna_backend_cpu(NULL);
    tuna_rng rng;
    tuna_rng_seed(&rng, 7);
    tuna_rng_fill_normal(&rng, e->image, 192, 0.0f, 1.0f);
    tuna_rng_fill_normal(&rng, e->target, 192, 0.0f, 0.5f);
    e->t[0] = 0.4f;
    memset(e->mask, 0, sizeof e->mask);
    e->mask[2] = 1;
    e->flow[0] = 1;
    e->images[0] = e->image;
    e->targets[0] = e->target;
    e->masks[0] = e->mask;
    int heights[1] = {8}, widths[1] = {8}, found = 0;
    e->seq = (tuna_sequence){.ids = e->ids, .length = L, .image_count = 1, .images = e->images, .t = e->t,
                             .masks = e->masks};
    if (tuna_find_segments(e->ids, L, c, 1, heights, widths, &e->seq.segments, &found, NULL) != TUNA_OK) return 1;
    e->ex = (tuna_train_example){.sequence = &e->seq, .labels = e->labels, .targets = e->targets, .flow_images = e->flow};
    return 0;
}

static double loss_of(const tuna_model *m, const micro_example *e) {
    tuna_losses l;
    tuna_error err = {0};
    if (tuna_model_loss_and_gradients(m, NULL, &e->ex, 1.0f, NULL, &e->backend, NULL, &l, &err) != TUNA_OK) return NAN;
    return l.loss;
}

TEST(every_gradient_matches_finite_differences) {
    tuna_config c;
    micro_config(&c);
    tuna_gradients params, grads;
    tuna_error err = {0};
    REQUIRE(tuna_gradients_init(&params, &c, NULL, NULL, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_gradients_init(&grads, &c, NULL, NULL, &err) == TUNA_OK, "%s", err.message);
    fill_random(&params, 1);
    tuna_model model;
    REQUIRE(tuna_model_bind(&model, &c, find_param, &params, &err) == TUNA_OK, "%s", err.message);
    micro_example e;
    REQUIRE(build_example(&e, &c) == 0, "segments");
    tuna_losses losses;
    REQUIRE(tuna_model_loss_and_gradients(&model, &grads.model, &e.ex, 1.0f, NULL, &e.backend, NULL, &losses, &err) == TUNA_OK,
            "%s", err.message);
    CHECK(losses.loss_ce > 0 && losses.loss_flow > 0, "both losses present: %g %g", losses.loss_ce, losses.loss_flow);
    tuna_rng rng;
    tuna_rng_seed(&rng, 3);
    int checked = 0, bad = 0, tensors_with_signal = 0;
    const float eps = 1e-2f;
    for (size_t i = 0; i < params.count; i++) {
        float *w = params.tensors[i].data, *g = grads.tensors[i].data;
        int64_t n = tuna_tensor_numel(&params.tensors[i]);
        int signal = 0;
        for (int trial = 0; trial < 4; trial++) {
            int64_t j = (int64_t)tuna_rng_below(&rng, (uint64_t)n);
            float saved = w[j];
            w[j] = saved + eps;
            double plus = loss_of(&model, &e);
            w[j] = saved - eps;
            double minus = loss_of(&model, &e);
            w[j] = saved;
            double fd = (plus - minus) / (2 * eps);
            double tolerance = 0.05 * fabs(fd) + 2e-3;
            if (fabs(fd - g[j]) > tolerance) {
                bad++;
                fprintf(stderr, "  %s[%lld]: analytic %.6g, finite difference %.6g\n", params.list[i].name,
                        (long long)j, g[j], fd);
            }
            signal |= fabs(fd) > 1e-4;
            checked++;
        }
        tensors_with_signal += signal;
    }
    CHECK(bad == 0, "%d of %d gradient entries disagree with finite differences", bad, checked);
    CHECK(tensors_with_signal > (int)params.count / 2, "only %d tensors moved the loss", tensors_with_signal);
    free(e.seq.segments);
    tuna_model_free(&model);
    tuna_gradients_free(&params);
    tuna_gradients_free(&grads);
}

TEST(frozen_parameters_get_no_buffer_and_others_still_match) {
    tuna_config c;
    micro_config(&c);
    tuna_gradients params, all, some;
    tuna_error err = {0};
    REQUIRE(tuna_gradients_init(&params, &c, NULL, NULL, &err) == TUNA_OK, "%s", err.message);
    fill_random(&params, 2);
    REQUIRE(tuna_gradients_init(&all, &c, NULL, NULL, &err) == TUNA_OK, "%s", err.message);
    int only_head(void *ctx, const char *name);
    REQUIRE(tuna_gradients_init(&some, &c, only_head, NULL, &err) == TUNA_OK, "%s", err.message);
    tuna_model model;
    REQUIRE(tuna_model_bind(&model, &c, find_param, &params, &err) == TUNA_OK, "%s", err.message);
    micro_example e;
    REQUIRE(build_example(&e, &c) == 0, "segments");
    tuna_losses l;
    CHECK(tuna_model_loss_and_gradients(&model, &all.model, &e.ex, 1.0f, NULL, &e.backend, NULL, &l, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_model_loss_and_gradients(&model, &some.model, &e.ex, 1.0f, NULL, &e.backend, NULL, &l, &err) == TUNA_OK, "%s", err.message);
    int frozen = 0, compared = 0;
    for (size_t i = 0; i < some.count; i++) {
        if (!some.tensors[i].data) { frozen++; continue; }
        compared++;
        double rel = test_max_relative_error(some.tensors[i].data, all.tensors[i].data, tuna_tensor_numel(&all.tensors[i]));
        CHECK(rel < 1e-6, "%s differs when others are frozen: %g", some.list[i].name, rel);
    }
    CHECK(frozen > 0 && compared > 0, "frozen %d, trained %d", frozen, compared);
    free(e.seq.segments);
    tuna_model_free(&model);
    tuna_gradients_free(&params);
    tuna_gradients_free(&all);
    tuna_gradients_free(&some);
}

int only_head(void *ctx, const char *name) {
    (void)ctx;
    return strncmp(name, "diffusion_head", 14) == 0;
}

int main(void) {
    RUN(every_gradient_matches_finite_differences);
    RUN(frozen_parameters_get_no_buffer_and_others_still_match);
    return test_summary();
}
