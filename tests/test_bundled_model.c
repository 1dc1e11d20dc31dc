/* The bundled model (models/tuna2-small, trained by `tuna train`, model card in
 * its README.md): it loads as the default model, and on the committed ground-
 * truth tasks of tests/fixtures/eval (81 scenes and Fashion-MNIST test items,
 * none of them seen in training) it keeps at least the scores recorded when it
 * was shipped, minus a margin for floating-point differences between machines. */
#include "test.h"
#include "eval/eval.h"
#include "model/tuna2.h"
#include "text/tokenizer.h"

#define MODEL "models/tuna2-small"

/* Shipped scores on tests/fixtures/eval/tasks.jsonl with the options below,
 * minus 10 points (see models/tuna2-small/README.md). */
#define MIN_UNDERSTAND 0.55
#define MIN_GENERATE 0.25

TEST(bundled_model_loads_and_keeps_its_scores) {
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_model_load(MODEL, &model, &err) == TUNA_OK, "%s", err.message);
    CHECK(model.config.hidden_size == 192 && model.config.patch_size == 4, "the shipped configuration");
    if (tuna_tokenizer_load(MODEL "/tokenizer.json.gz", &tok, &err) != TUNA_OK) {
        CHECK(0, "%s", err.message);
        tuna_model_free(&model);
        return;
    }
    tuna_eval_tasks tasks;
    tuna_judges judges;
    REQUIRE(tuna_eval_tasks_load("tests/fixtures/eval/tasks.jsonl", &tasks, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_judges_load("models/judge", &judges, &err) == TUNA_OK, "%s", err.message);
    tuna_eval_options o;
    tuna_eval_options_default(&o);
    o.negative = "an image";
    o.steps = 20;
    tuna_threads pool;
    tuna_threads_init(&pool, 0);
    tuna_eval_report r;
    tuna_status s = tuna_eval_run(&model, tok, &judges, &tasks, &o, &pool, &r, &err);
    CHECK(s == TUNA_OK, "%s", err.message);
    if (s == TUNA_OK) {
        double und = tuna_eval_section_score(&r, TUNA_TASK_UNDERSTAND);
        double gen = tuna_eval_section_score(&r, TUNA_TASK_GENERATE);
        printf("     understanding %.1f%%, generation %.1f%%, reconstruction %.2f dB\n", 100 * und, 100 * gen,
               r.reconstructions ? r.psnr_sum / r.reconstructions : 0.0);
        CHECK(und >= MIN_UNDERSTAND, "understanding %.3f below %.3f", und, (double)MIN_UNDERSTAND);
        CHECK(gen >= MIN_GENERATE, "generation %.3f below %.3f", gen, (double)MIN_GENERATE);
        tuna_eval_report_free(&r);
    }
    tuna_judges_free(&judges);
    tuna_eval_tasks_free(&tasks);
    tuna_tokenizer_free(tok);
    tuna_model_free(&model);
}

int main(void) {
    RUN(bundled_model_loads_and_keeps_its_scores);
    return test_summary();
}
