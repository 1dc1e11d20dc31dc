/* AdamW, clipping, schedules, EMA and freezing (src/train/optimizer.h, params.h),
 * against PyTorch values in tests/fixtures/train/adamw.safetensors
 * (tools/make_train_fixtures.py). */
#include "test.h"

#include "io/safetensors.h"
#include "train/optimizer.h"

static const char *names[] = {"a_weight", "b_bias"};

static const tuna_tensor *fixture(const tuna_safetensors *st, const char *fmt, int step, const char *name) {
    char key[128];
    if (step >= 0) snprintf(key, sizeof key, fmt, step, name);
    else snprintf(key, sizeof key, fmt, name);
    return tuna_safetensors_find(st, key);
}

TEST(adamw_matches_torch) {
    tuna_safetensors st;
    tuna_error err = {0};
    REQUIRE(tuna_safetensors_open("tests/fixtures/train/adamw.safetensors", &st, &err) == TUNA_OK, "%s",
            err.message);
    tuna_param_table table = {0};
    for (int i = 0; i < 2; i++) {
        const tuna_tensor *w0 = fixture(&st, "w0.%s", -1, names[i]);
        REQUIRE(w0 && w0->dtype == TUNA_F32, "w0 %s", names[i]);
        REQUIRE(tuna_param_table_add(&table, names[i], w0->ndim, w0->shape, w0->data, &err) == TUNA_OK, "%s",
                err.message);
    }
    REQUIRE(tuna_param_table_setup_training(&table, NULL, 1, &err) == TUNA_OK, "%s", err.message);
    tuna_optimizer_config cfg;
    tuna_optimizer_config_default(&cfg);
    cfg.learning_rate = 1e-2;
    cfg.warmup_steps = 2;
    tuna_optimizer opt;
    tuna_optimizer_init(&opt, &cfg);
    const tuna_tensor *lr = tuna_safetensors_find(&st, "lr"), *norm = tuna_safetensors_find(&st, "norm");
    REQUIRE(lr && norm, "lr/norm");
    int steps = (int)lr->shape[0];
    double worst_w = 0, worst_ema = 0;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < 2; i++) {
            const tuna_tensor *g = fixture(&st, "grad.%d.%s", s, names[i]);
            REQUIRE(g, "grad %d", s);
            memcpy(table.items[i].grad, g->data, (size_t)table.items[i].numel * sizeof(float));
        }
        double want_lr = ((const double *)lr->data)[s];
        double want_norm = ((const double *)norm->data)[s];
        double got_lr = tuna_lr_at(&cfg, opt.step);
        CHECK(fabs(got_lr - want_lr) <= 1e-15, "step %d lr %g want %g", s, got_lr, want_lr);
        double got_norm = tuna_clip_grad_norm(&table, cfg.max_grad_norm, NULL);
        CHECK(fabs(got_norm - want_norm) <= 1e-6 * want_norm, "step %d norm %.9g want %.9g", s, got_norm, want_norm);
        tuna_adamw_step(&opt, &table, got_lr);
        tuna_ema_update(&opt, &table);
        for (int i = 0; i < 2; i++) {
            const tuna_tensor *w = fixture(&st, "weight.%d.%s", s, names[i]);
            const tuna_tensor *e = fixture(&st, "ema.%d.%s", s, names[i]);
            REQUIRE(w && e, "weight/ema %d", s);
            double rw = test_max_relative_error(table.items[i].weight, w->data, table.items[i].numel);
            double re = test_max_relative_error(table.items[i].ema, e->data, table.items[i].numel);
            if (rw > worst_w) worst_w = rw;
            if (re > worst_ema) worst_ema = re;
        }
    }
    CHECK(worst_w < 1e-6, "weights off by %g relative", worst_w);
    CHECK(worst_ema < 1e-6, "ema off by %g relative", worst_ema);
    CHECK(opt.step == steps, "step counter %lld", (long long)opt.step);
    printf("  adamw vs torch: %d updates, max rel err weights %.2e, ema %.2e\n", steps, worst_w, worst_ema);
    tuna_param_table_free(&table);
    tuna_safetensors_close(&st);
}

TEST(clipping_scales_to_max_norm) {
    tuna_param_table t = {0};
    int64_t shape[1] = {2};
    REQUIRE(tuna_param_table_add(&t, "x", 1, shape, NULL, NULL) == TUNA_OK, "add");
    REQUIRE(tuna_param_table_add(&t, "y", 1, shape, NULL, NULL) == TUNA_OK, "add");
    REQUIRE(tuna_param_table_setup_training(&t, NULL, 0, NULL) == TUNA_OK, "setup");
    t.items[0].grad[0] = 3; t.items[0].grad[1] = 0;
    t.items[1].grad[0] = 0; t.items[1].grad[1] = 4;
    double n = tuna_clip_grad_norm(&t, 1.0, NULL);
    CHECK(fabs(n - 5.0) < 1e-12, "norm %g", n);
    CHECK(fabs(tuna_grad_global_norm(&t, NULL) - 5.0 / (5.0 + 1e-6)) < 1e-6, "after clip %g", tuna_grad_global_norm(&t, NULL));
    /* below the threshold: untouched */
    t.items[0].grad[0] = 0.3f; t.items[0].grad[1] = 0; t.items[1].grad[0] = 0; t.items[1].grad[1] = 0.4f;
    tuna_clip_grad_norm(&t, 1.0, NULL);
    CHECK(t.items[0].grad[0] == 0.3f && t.items[1].grad[1] == 0.4f, "small grads changed");
    /* non-finite: reported, left alone */
    t.items[0].grad[0] = NAN;
    CHECK(!isfinite(tuna_clip_grad_norm(&t, 1.0, NULL)), "nan norm");
    tuna_param_table_free(&t);
}

TEST(schedules) {
    tuna_optimizer_config c;
    tuna_optimizer_config_default(&c);
    CHECK(c.beta1 == 0.9 && c.beta2 == 0.95 && c.eps == 1e-8 && c.weight_decay == 0.01 && c.max_grad_norm == 1.0 &&
              c.ema_decay == 0.9999 && c.warmup_steps == 1000,
          "defaults");
    c.learning_rate = 1e-4;
    c.warmup_steps = 10;
    CHECK(tuna_lr_at(&c, 0) == 0.0, "first update lr 0");
    CHECK(fabs(tuna_lr_at(&c, 5) - 5e-5) < 1e-18, "half warmup");
    CHECK(tuna_lr_at(&c, 10) == 1e-4 && tuna_lr_at(&c, 100000) == 1e-4, "constant");
    c.schedule = TUNA_LR_COSINE;
    c.total_steps = 110;
    c.min_lr = 1e-6;
    CHECK(fabs(tuna_lr_at(&c, 10) - 1e-4) < 1e-15, "cosine start");
    CHECK(fabs(tuna_lr_at(&c, 60) - (1e-6 + 0.5 * (1e-4 - 1e-6))) < 1e-15, "cosine middle %g", tuna_lr_at(&c, 60));
    CHECK(fabs(tuna_lr_at(&c, 110) - 1e-6) < 1e-15 && fabs(tuna_lr_at(&c, 500) - 1e-6) < 1e-15, "cosine floor");
    for (int s = 11; s < 110; s++) CHECK(tuna_lr_at(&c, s) <= tuna_lr_at(&c, s - 1), "monotone at %d", s);
    c.warmup_steps = 0;
    CHECK(tuna_lr_at(&c, 0) == 1e-4, "no warmup");
}

TEST(ema_decay_ramp) {
    tuna_optimizer_config c;
    tuna_optimizer_config_default(&c);
    CHECK(fabs(tuna_ema_decay_at(&c, 2) - 3.0 / 12.0) < 1e-15, "n=2");
    CHECK(tuna_ema_decay_at(&c, 100000000) == 0.9999, "cap");
    c.ema_lit_warmup = 0;
    CHECK(tuna_ema_decay_at(&c, 2) == 0.9999, "constant");
    /* constant decay: ema = d*ema + (1-d)*w after the first copy */
    tuna_param_table t = {0};
    int64_t shape[1] = {1};
    float one = 1.0f;
    REQUIRE(tuna_param_table_add(&t, "x", 1, shape, &one, NULL) == TUNA_OK, "add");
    REQUIRE(tuna_param_table_setup_training(&t, NULL, 1, NULL) == TUNA_OK, "setup");
    c.ema_decay = 0.5;
    tuna_optimizer opt;
    tuna_optimizer_init(&opt, &c);
    t.items[0].weight[0] = 2;
    tuna_ema_update(&opt, &t);
    CHECK(t.items[0].ema[0] == 2, "first update copies: %g", t.items[0].ema[0]);
    t.items[0].weight[0] = 4;
    tuna_ema_update(&opt, &t);
    CHECK(t.items[0].ema[0] == 3, "second: %g", t.items[0].ema[0]);
    tuna_param_table_free(&t);
}

TEST(freezing_allocates_nothing) {
    const char *names3[] = {"tuna.model.layers.0.mlp.up_proj.weight", "tuna.model.norm.weight",
                            "diffusion_head_a.0.mlp.up_proj.weight", "diffusion_head_b.linear.bias"};
    tuna_param_table t = {0};
    int64_t shape[2] = {16, 16};
    for (int i = 0; i < 4; i++) REQUIRE(tuna_param_table_add(&t, names3[i], 2, shape, NULL, NULL) == TUNA_OK, "add");
    const char *freeze[] = {"tuna.model.layers.*"};
    tuna_freeze_rules rules = {.freeze = freeze, .freeze_count = 1};
    REQUIRE(tuna_param_table_setup_training(&t, &rules, 1, NULL) == TUNA_OK, "setup");
    CHECK(!t.items[0].trainable && !t.items[0].grad && !t.items[0].m && !t.items[0].v && !t.items[0].ema,
          "frozen layer has state");
    CHECK(t.items[1].trainable && t.items[1].grad && t.items[1].m && t.items[1].v && t.items[1].ema, "norm trains");
    tuna_param_stats s = tuna_param_table_stats(&t);
    CHECK(s.trainable_tensors == 3 && s.state_bytes == 3 * 4 * 256 * sizeof(float), "stats %d %zu",
          s.trainable_tensors, s.state_bytes);
    /* train-only then freeze */
    const char *only[] = {"diffusion_head_*"};
    const char *freeze2[] = {"*.bias"};
    tuna_freeze_rules r2 = {.freeze = freeze2, .freeze_count = 1, .train_only = only, .train_only_count = 1};
    REQUIRE(tuna_param_table_setup_training(&t, &r2, 0, NULL) == TUNA_OK, "setup2");
    CHECK(!t.items[0].trainable && !t.items[1].trainable && t.items[2].trainable && !t.items[3].trainable,
          "train-only rules");
    CHECK(!t.items[2].ema, "no ema requested");
    /* everything frozen is an error */
    const char *all[] = {"*"};
    tuna_freeze_rules r3 = {.freeze = all, .freeze_count = 1};
    tuna_error err = {0};
    CHECK(tuna_param_table_setup_training(&t, &r3, 0, &err) != TUNA_OK, "all frozen accepted");
    tuna_param_table_free(&t);
}

TEST(frozen_weights_do_not_move) {
    tuna_param_table t = {0};
    int64_t shape[1] = {3};
    float w[3] = {1, 2, 3};
    REQUIRE(tuna_param_table_add(&t, "frozen.w", 1, shape, w, NULL) == TUNA_OK, "add");
    REQUIRE(tuna_param_table_add(&t, "train.w", 1, shape, w, NULL) == TUNA_OK, "add");
    const char *freeze[] = {"frozen.*"};
    tuna_freeze_rules rules = {.freeze = freeze, .freeze_count = 1};
    REQUIRE(tuna_param_table_setup_training(&t, &rules, 0, NULL) == TUNA_OK, "setup");
    tuna_optimizer_config c;
    tuna_optimizer_config_default(&c);
    tuna_optimizer opt;
    tuna_optimizer_init(&opt, &c);
    for (int k = 0; k < 3; k++) t.items[1].grad[k] = 1;
    tuna_adamw_step(&opt, &t, 0.1);
    CHECK(t.items[0].weight[0] == 1 && t.items[0].weight[2] == 3, "frozen moved");
    CHECK(t.items[1].weight[0] < 1, "trained did not move");
    tuna_param_table_free(&t);
}

int main(void) {
    RUN(adamw_matches_torch);
    RUN(clipping_scales_to_max_norm);
    RUN(schedules);
    RUN(ema_decay_ramp);
    RUN(freezing_allocates_nothing);
    RUN(frozen_weights_do_not_move);
    return test_summary();
}
