/* Restoration: detection of re-initialised units on the bundled model under
 * every init rule and many random choices of units (precision and recall
 * 100%, with margin), the statistic itself, and the damage. */
#include "test.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "io/checkpoint.h"
#include "model/config_json.h"
#include "ops/cpu/quant.h"
#include "train/params.h"
#include "train/restore.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BUNDLED "models/tuna2-small"

typedef struct {
    tuna_param_table params;
    tuna_tensor *views;
    tuna_config config;
} f32_model;

static const tuna_tensor *find_view(void *ctx, const char *name) {
    f32_model *m = ctx;
    for (int i = 0; i < m->params.count; i++)
        if (strcmp(m->params.items[i].name, name) == 0) return &m->views[i];
    return NULL;
}
static tuna_tensor *find_mutable(void *ctx, const char *name) { return (tuna_tensor *)find_view(ctx, name); }

static int load_f32(f32_model *m, tuna_error *err) {
    memset(m, 0, sizeof *m);
    tuna_checkpoint *ck;
    const char *source;
    if (tuna_checkpoint_open(BUNDLED, &ck, err) != TUNA_OK) return 1;
    int bad = tuna_config_for_checkpoint(ck, &m->config, &source, err) != TUNA_OK ||
              tuna_param_table_from_checkpoint(&m->params, ck, err) != TUNA_OK;
    tuna_checkpoint_close(ck);
    if (bad) return 1;
    m->views = calloc((size_t)m->params.count, sizeof *m->views);
    for (int i = 0; i < m->params.count; i++) {
        tuna_param *p = &m->params.items[i];
        tuna_tensor_init_view(&m->views[i], TUNA_F32, p->ndim, p->shape, p->weight);
    }
    return 0;
}

static void free_f32(f32_model *m) {
    tuna_param_table_free(&m->params);
    free(m->views);
}

TEST(spectral_excess_separates_iid_from_structured) {
    enum { M = 256, N = 128 };
    static float w[M * N];
    tuna_rng rng;
    tuna_rng_seed(&rng, 5);
    tuna_rng_fill_normal(&rng, w, M * N, 0, 0.02f);
    double iid = tuna_spectral_excess(w, M, N);
    CHECK(iid > 0.85 && iid < 1.1, "i.i.d. normal: %.3f", iid);
    for (int i = 0; i < M * N; i++) w[i] = 0.05f * (2 * tuna_rng_uniform(&rng) - 1);
    double uni = tuna_spectral_excess(w, M, N);
    CHECK(uni > 0.85 && uni < 1.1, "i.i.d. uniform: %.3f", uni);
    /* the same noise plus a rank-one direction of a tenth of its energy */
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) w[i * N + j] += 0.02f * sinf(0.1f * i) * cosf(0.3f * j);
    double structured = tuna_spectral_excess(w, M, N);
    CHECK(structured > 1.3, "with a rank-one component: %.3f", structured);
    memset(w, 0, sizeof w);
    CHECK(tuna_spectral_excess(w, M, N) == 0.0, "a zero matrix scores 0");
}

TEST(clean_bundled_model_has_no_damaged_unit) {
    f32_model m;
    tuna_error err = {0};
    REQUIRE(load_f32(&m, &err) == 0, "%s", err.message);
    tuna_restore_detection d;
    REQUIRE(tuna_restore_detect(&m.config, find_view, &m, &d, &err) == TUNA_OK, "%s", err.message);
    CHECK(d.count == m.config.llm.num_layers + m.config.head.num_layers + 6, "%d units", d.count);
    double min_margin = 1e9;
    for (int i = 0; i < d.count; i++) {
        CHECK(!d.units[i].damaged, "%s called damaged (score %.3f)", d.units[i].prefix, d.units[i].score);
        min_margin = fmin(min_margin, d.units[i].margin);
    }
    CHECK(min_margin > 0.15, "clean margin %.3f", min_margin);
    tuna_restore_detection_free(&d);
    free_f32(&m);
}

/* Every rule, random sets of 1-3 units: exactly the damaged ones are found. */
TEST(detection_sweep_over_rules_and_units) {
    f32_model clean, m;
    tuna_error err = {0};
    REQUIRE(load_f32(&clean, &err) == 0 && load_f32(&m, &err) == 0, "%s", err.message);
    char(*units)[64];
    int unit_count;
    REQUIRE(tuna_restore_units(&clean.config, &units, &unit_count, &err) == TUNA_OK, "%s", err.message);
    int runs = 0, wrong = 0;
    double min_margin = 1e9;
    for (uint64_t seed = 0; seed < 25; seed++) { /* five per rule */
        for (int i = 0; i < clean.params.count; i++)
            memcpy(m.params.items[i].weight, clean.params.items[i].weight, sizeof(float) * clean.params.items[i].numel);
        tuna_rng rng;
        tuna_rng_seed(&rng, 1000 + seed);
        tuna_init_rule rule = (tuna_init_rule)(seed % TUNA_INIT_RULE_COUNT);
        int damaged[64] = {0}, k = 1 + (int)(seed % 3);
        for (int j = 0; j < k; j++) {
            int u = (int)(tuna_rng_uniform(&rng) * unit_count) % unit_count;
            /* the final norm is one vector: under kaiming/xavier rules it is still reset to 1 */
            damaged[u] = tuna_restore_damage(&m.config, units[u], rule, &rng, find_mutable, &m) > 0;
        }
        tuna_restore_detection d;
        REQUIRE(tuna_restore_detect(&m.config, find_view, &m, &d, &err) == TUNA_OK, "%s", err.message);
        for (int u = 0; u < d.count; u++) {
            if (d.units[u].damaged != damaged[u]) {
                wrong++;
                CHECK(0, "seed %llu rule %s: %s %s (score %.3f)", (unsigned long long)seed, tuna_init_rule_name(rule),
                      d.units[u].prefix, damaged[u] ? "missed" : "falsely flagged", d.units[u].score);
            }
            min_margin = fmin(min_margin, d.units[u].margin);
        }
        tuna_restore_detection_free(&d);
        runs++;
    }
    printf("  %d damaged models, %d wrong unit verdicts, smallest margin %.2f\n", runs, wrong, min_margin);
    CHECK(min_margin > 0.1, "margin %.3f", min_margin);
    free(units);
    free_f32(&m);
    free_f32(&clean);
}

/* Quantised storage does not move the statistic across the threshold. */
TEST(detection_reads_quantised_matrices) {
    enum { M = 192, N = 256 };
    static float w[M * N], back[M * N];
    static unsigned char q[M * (N / 32) * 34];
    tuna_rng rng;
    tuna_rng_seed(&rng, 9);
    tuna_rng_fill_normal(&rng, w, M * N, 0, 0.02f);
    tuna_error err = {0};
    REQUIRE(tuna_quantize_rows(TUNA_Q8_0, w, q, M, N, NULL, &err) == TUNA_OK, "%s", err.message);
    for (int r = 0; r < M; r++) REQUIRE(tuna_dequantize_row(TUNA_Q8_0, q + (size_t)r * (N / 32) * 34, back + r * N, N) == 0, "row");
    double e32 = tuna_spectral_excess(w, M, N), e8 = tuna_spectral_excess(back, M, N);
    CHECK(fabs(e32 - e8) < 0.01 && e8 < TUNA_RESTORE_THRESHOLD, "f32 %.4f vs q8_0 %.4f", e32, e8);
}

int main(void) {
    RUN(spectral_excess_separates_iid_from_structured);
    RUN(clean_bundled_model_has_no_damaged_unit);
    RUN(detection_sweep_over_rules_and_units);
    RUN(detection_reads_quantised_matrices);
    return test_summary();
}
