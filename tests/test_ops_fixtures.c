/* RoPE tables and the time embedding against values torch computes in f32 the
 * way the reference does (tools/gen_ops_fixtures.py ->
 * tests/fixtures/ops_rope_time.txt). Pins the f32 angle arithmetic: angles
 * formed in double instead would be off by up to 6e-5 at position 4095. */
#include "test.h"

#include "ops/ops.h"

#define FIXTURE "tests/fixtures/ops_rope_time.txt"

/* Read block `name` (count floats) into out; returns count or -1. */
static long read_block(const char *name, float *out, long cap) {
    FILE *f = fopen(FIXTURE, "r");
    if (!f) return -1;
    char tag[64];
    long n;
    while (fscanf(f, "%63s %ld", tag, &n) == 2) {
        int match = strcmp(tag, name) == 0;
        for (long i = 0; i < n; i++) {
            float v;
            if (fscanf(f, "%f", &v) != 1) { fclose(f); return -1; }
            if (match && i < cap) out[i] = v;
        }
        if (match) { fclose(f); return n; }
    }
    fclose(f);
    return -1;
}

static double max_abs_diff(const float *a, const float *b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static const double positions[6] = {0, 1, 7, 100, 1000, 4095};

TEST(qwen2_rope_tables_match_torch) {
    static float c[384], s[384];
    REQUIRE(read_block("qwen2_cos", c, 384) == 384 && read_block("qwen2_sin", s, 384) == 384, "fixture");
    float inv[64];
    tuna_rope_inv_freq_default(inv, 128, 1e6);
    tuna_rope_plan plan;
    REQUIRE(tuna_rope_plan_init(&plan, 6, 128, NULL) == TUNA_OK, "plan");
    for (int t = 0; t < 6; t++) tuna_rope_plan_set_rotate_half(&plan, t, positions[t], inv);
    double ec = max_abs_diff(plan.cos, c, 384), es = max_abs_diff(plan.sin, s, 384);
    printf("  max |diff| cos %.3g sin %.3g\n", ec, es);
    CHECK(ec < 5e-7 && es < 5e-7, "cos err %.3g sin err %.3g", ec, es);
    tuna_rope_plan_free(&plan);
}

TEST(llama3_rope_tables_match_torch) {
    static float inv_ref[32], c[192], s[192];
    REQUIRE(read_block("llama3_inv_freq", inv_ref, 32) == 32, "fixture");
    REQUIRE(read_block("llama3_cos", c, 192) == 192 && read_block("llama3_sin", s, 192) == 192, "fixture");
    float inv[32];
    tuna_rope_inv_freq_llama3(inv, 64, 5e5, 32, 1, 4, 8192);
    double worst = 0;
    for (int i = 0; i < 32; i++) worst = fmax(worst, fabs(inv[i] - inv_ref[i]) / inv_ref[i]);
    CHECK(worst < 3e-7, "inv_freq rel err %.3g", worst);
    tuna_rope_plan plan;
    REQUIRE(tuna_rope_plan_init(&plan, 6, 64, NULL) == TUNA_OK, "plan");
    for (int t = 0; t < 6; t++) tuna_rope_plan_set_rotate_half(&plan, t, positions[t], inv);
    double ec = max_abs_diff(plan.cos, c, 192), es = max_abs_diff(plan.sin, s, 192);
    printf("  max |diff| cos %.3g sin %.3g\n", ec, es);
    CHECK(ec < 5e-7 && es < 5e-7, "cos err %.3g sin err %.3g", ec, es);
    tuna_rope_plan_free(&plan);
}

TEST(rope3d_tables_match_build_rope) {
    static float c[160], s[160];
    REQUIRE(read_block("rope3d_cos", c, 160) == 160 && read_block("rope3d_sin", s, 160) == 160, "fixture");
    const int rc[5][2] = {{0, 0}, {0, 5}, {3, 1}, {31, 31}, {63, 40}};
    tuna_rope_plan plan;
    REQUIRE(tuna_rope_plan_init(&plan, 5, 64, NULL) == TUNA_OK, "plan");
    for (int t = 0; t < 5; t++) tuna_rope_plan_set_3d(&plan, t, 0, rc[t][0], rc[t][1], 1e4);
    /* the plan stores minus the angle */
    float neg_sin[160];
    for (int i = 0; i < 160; i++) neg_sin[i] = -plan.sin[i];
    double ec = max_abs_diff(plan.cos, c, 160), es = max_abs_diff(neg_sin, s, 160);
    printf("  max |diff| cos %.3g sin %.3g\n", ec, es);
    CHECK(ec < 5e-7 && es < 5e-7, "cos err %.3g sin err %.3g", ec, es);
    tuna_rope_plan_free(&plan);
}

TEST(time_embedding_matches_torch) {
    static float ref[1024], out[1024];
    REQUIRE(read_block("time_emb", ref, 1024) == 1024, "fixture");
    float t[4] = {0.0f, 0.25f, 0.7311f, 1.0f};
    tuna_timestep_embedding(out, t, 4, 256, 1e4);
    double e = max_abs_diff(out, ref, 1024);
    printf("  max |diff| %.3g\n", e);
    CHECK(e < 2e-7, "max abs err %.3g", e);
}

int main(void) {
    RUN(qwen2_rope_tables_match_torch);
    RUN(llama3_rope_tables_match_torch);
    RUN(rope3d_tables_match_build_rope);
    RUN(time_embedding_matches_torch);
    return test_summary();
}
