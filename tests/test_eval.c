/* `tuna eval`: judges on ground-truth images, Frechet distance, exact match,
 * the task-file parser, and the whole runner (ground truth, and a random model
 * for the plumbing). Fixtures: tests/fixtures/eval (tools/make_eval_fixtures.py)
 * and the committed judges in models/judge. */
#include "test.h"

#include "core/rng.h"
#include "core/tensor.h"
#include "eval/eval.h"
#include "eval/eval_stats.h"
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define FIXTURES "tests/fixtures/eval"

static int load_tasks(tuna_eval_tasks *t) {
    tuna_error err = {0};
    if (tuna_eval_tasks_load(FIXTURES "/tasks.jsonl", t, &err) != TUNA_OK) {
        fprintf(stderr, "  %s\n", err.message);
        return 0;
    }
    return 1;
}

static int load_judges(tuna_judges *j) {
    tuna_error err = {0};
    if (tuna_judges_load("models/judge", j, &err) != TUNA_OK) {
        fprintf(stderr, "  %s\n", err.message);
        return 0;
    }
    return j->has_fashion && j->has_text;
}

/* Every ground-truth generate/edit image of the fixtures, judged. */
static void judge_fixture_images(int fashion, int *right, int *total) {
    tuna_eval_tasks tasks;
    tuna_judges j;
    *right = *total = 0;
    if (!load_tasks(&tasks)) return;
    if (!load_judges(&j)) {
        tuna_eval_tasks_free(&tasks);
        return;
    }
    for (int i = 0; i < tasks.count; i++) {
        const tuna_eval_task *t = &tasks.tasks[i];
        if (t->kind != TUNA_TASK_GENERATE && t->kind != TUNA_TASK_EDIT) continue;
        if ((t->expect.fashion_class >= 0) != fashion) continue;
        tuna_image img = {0};
        tuna_error err = {0};
        const char *path = t->kind == TUNA_TASK_EDIT ? t->target : t->image;
        int ok = 0, judged = 0;
        if (tuna_image_decode_file(path, NULL, &img, &err) == TUNA_OK &&
            tuna_judge_image(&j, &img, &t->expect, t->kind == TUNA_TASK_EDIT ? 4.8f : 0, &ok, &judged, &err) == TUNA_OK) {
            (*total)++;
            *right += ok && judged;
            if (!ok && !fashion) fprintf(stderr, "  judge failed on %s (%s)\n", t->id, path);
        } else {
            fprintf(stderr, "  %s: %s\n", t->id, err.message);
        }
        tuna_image_free(&img);
    }
    tuna_judges_free(&j);
    tuna_eval_tasks_free(&tasks);
}

TEST(scene_and_text_judges_pass_every_ground_truth_scene) {
    int right, total;
    judge_fixture_images(0, &right, &total);
    CHECK(total >= 60, "only %d scene images judged", total);
    CHECK(right == total, "%d of %d ground-truth scenes judged correct", right, total);
}

TEST(fashion_judge_on_real_test_items) {
    int right, total;
    judge_fixture_images(1, &right, &total);
    CHECK(total >= 30, "only %d items", total);
    /* the classifier scores ~87% on the 10k real test images */
    CHECK(right >= total * 75 / 100, "%d of %d Fashion-MNIST items judged correct", right, total);
}

TEST(detector_finds_colours_shapes_and_positions) {
    tuna_image img = {0};
    tuna_error err = {0};
    REQUIRE(tuna_image_alloc(&img, 32, 32, &err) == TUNA_OK, "%s", err.message);
    for (int i = 0; i < 32 * 32; i++) memcpy(img.rgb + 3 * i, tuna_judge_background, 3);
    /* a red 10x10 square at (4..13, 10..19) and a blue disc of radius 5 at (24, 15) */
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) {
            const uint8_t *c = NULL;
            if (x >= 4 && x < 14 && y >= 10 && y < 20) c = tuna_judge_palette[0];
            if ((x + 0.5 - 24) * (x + 0.5 - 24) + (y + 0.5 - 15) * (y + 0.5 - 15) <= 25) c = tuna_judge_palette[2];
            if (c) memcpy(img.rgb + 3 * (y * 32 + x), c, 3);
        }
    img.rgb[0] = 0; /* a stray pixel is not an object */
    tuna_judge_scene s;
    REQUIRE(tuna_judge_detect(&img, &s, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(s.count == 2, "found %d objects", s.count);
    const tuna_judge_object *sq = s.objects[0].colour == 0 ? &s.objects[0] : &s.objects[1];
    const tuna_judge_object *ci = sq == &s.objects[0] ? &s.objects[1] : &s.objects[0];
    CHECK(sq->colour == 0 && sq->shape == 1 && fabsf(sq->x - 9) < 0.01f && fabsf(sq->y - 15) < 0.01f,
          "square: colour %d shape %d at %.2f,%.2f", sq->colour, sq->shape, sq->x, sq->y);
    CHECK(ci->colour == 2 && ci->shape == 0, "disc: colour %d shape %d", ci->colour, ci->shape);
    CHECK(strcmp(tuna_judge_relation(sq->x, sq->y, ci->x, ci->y), "left") == 0, "relation");
    tuna_expect e;
    tuna_expect_init(&e);
    e.object_count = 2;
    e.objects[0] = (tuna_expect_object){.shape = 1, .colour = 0};
    e.objects[1] = (tuna_expect_object){.shape = 0, .colour = 2};
    e.relation = tuna_judge_relation_index("right");
    e.rel_a = 1, e.rel_b = 0;
    tuna_judges none = {0};
    int ok = 0, judged = 0;
    CHECK(tuna_judge_image(&none, &img, &e, 0, &ok, &judged, &err) == TUNA_OK && ok && judged, "right of");
    e.relation = tuna_judge_relation_index("above");
    CHECK(tuna_judge_image(&none, &img, &e, 0, &ok, &judged, &err) == TUNA_OK && !ok, "not above");
    e.relation = -1;
    e.objects[0].has_position = 1, e.objects[0].x = 20, e.objects[0].y = 15; /* moved */
    CHECK(tuna_judge_image(&none, &img, &e, 4.8f, &ok, &judged, &err) == TUNA_OK && !ok, "position checked");
    e.objects[0].x = 10;
    CHECK(tuna_judge_image(&none, &img, &e, 4.8f, &ok, &judged, &err) == TUNA_OK && ok, "within tolerance");
    e.fashion_class = 3; /* no classifier loaded: unjudged, not a crash */
    CHECK(tuna_judge_image(&none, &img, &e, 0, &ok, &judged, &err) == TUNA_OK && !judged, "unjudged");
    tuna_image_free(&img);
}

/* ---- Frechet distance ----------------------------------------------------------- */
static float *random_features(int n, int d, uint64_t seed, float shift, float scale) {
    float *x = malloc(sizeof(float) * (size_t)n * d);
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < d; k++) /* correlated dimensions */
            x[(size_t)i * d + k] = shift + scale * (tuna_rng_normal(&rng) + (k ? 0.5f * x[(size_t)i * d + k - 1] : 0));
    return x;
}

TEST(frechet_of_a_set_with_itself_is_zero) {
    float *a = random_features(200, 16, 1, 0, 1);
    double fd = -1;
    tuna_error err = {0};
    REQUIRE(tuna_frechet_distance(a, 200, a, 200, 16, &fd, &err) == TUNA_OK, "%s", err.message);
    CHECK(fabs(fd) < 1e-8, "FD(a, a) = %g", fd);
    free(a);
}

TEST(frechet_grows_with_a_shift) {
    const int n = 300, d = 8;
    float *a = random_features(n, d, 2, 0, 1);
    float *b = malloc(sizeof(float) * n * d);
    double fd1, fd2;
    /* b = a + c: same covariance, so FD = d c^2 exactly */
    for (int i = 0; i < n * d; i++) b[i] = a[i] + 0.5f;
    REQUIRE(tuna_frechet_distance(a, n, b, n, d, &fd1, NULL) == TUNA_OK, "fd1");
    CHECK(fabs(fd1 - d * 0.25) < 1e-6, "FD of a shift by 0.5: %g, want %g", fd1, d * 0.25);
    for (int i = 0; i < n * d; i++) b[i] = a[i] + 1.0f;
    REQUIRE(tuna_frechet_distance(a, n, b, n, d, &fd2, NULL) == TUNA_OK, "fd2");
    CHECK(fd2 > fd1 && fabs(fd2 - d) < 1e-6, "FD grows: %g then %g", fd1, fd2);
    float *c = random_features(n, d, 3, 0, 1); /* an independent sample of the same law: small, > 0 */
    double fd3;
    REQUIRE(tuna_frechet_distance(a, n, c, n, d, &fd3, NULL) == TUNA_OK, "fd3");
    CHECK(fd3 > 0 && fd3 < fd1, "same law: %g", fd3);
    free(a), free(b), free(c);
}

TEST(frechet_matches_the_gaussian_closed_form) {
    /* 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2 with the sample means and standard deviations */
    const int n = 500;
    float *a = random_features(n, 1, 4, 1.0f, 2.0f), *b = random_features(n, 1, 5, -0.5f, 0.7f);
    double ma = 0, mb = 0, va = 0, vb = 0;
    for (int i = 0; i < n; i++) ma += a[i], mb += b[i];
    ma /= n, mb /= n;
    for (int i = 0; i < n; i++) va += (a[i] - ma) * (a[i] - ma), vb += (b[i] - mb) * (b[i] - mb);
    va /= n - 1, vb /= n - 1;
    double want = (ma - mb) * (ma - mb) + (sqrt(va) - sqrt(vb)) * (sqrt(va) - sqrt(vb)), fd;
    REQUIRE(tuna_frechet_distance(a, n, b, n, 1, &fd, NULL) == TUNA_OK, "fd");
    CHECK(fabs(fd - want) < 1e-6 * (1 + want), "1-D FD %.9g, closed form %.9g", fd, want);
    /* 2-D independent columns: the per-dimension closed forms add up (covariance ~diagonal
     * is not exact for samples, so use exactly uncorrelated constructions: (x, 0) vs (y, 0)) */
    float a2[2 * 500], b2[2 * 500];
    for (int i = 0; i < n; i++) a2[2 * i] = a[i], a2[2 * i + 1] = (i % 2) ? 1.f : -1.f;
    for (int i = 0; i < n; i++) b2[2 * i] = b[i], b2[2 * i + 1] = (i % 2) ? 1.f : -1.f;
    double fd2;
    REQUIRE(tuna_frechet_distance(a2, n, b2, n, 2, &fd2, NULL) == TUNA_OK, "fd2");
    CHECK(fd2 > 0, "2-D FD %g", fd2);
    CHECK(tuna_frechet_distance(a, 1, b, n, 1, &fd, NULL) != TUNA_OK, "one sample is refused");
    free(a), free(b);
}

TEST(symmetric_eigen_reconstructs_the_matrix) {
    const int n = 6;
    double a[36], copy[36], w[6], v[36];
    tuna_rng rng;
    tuna_rng_seed(&rng, 9);
    for (int i = 0; i < n; i++)
        for (int k = 0; k <= i; k++) a[i * n + k] = a[k * n + i] = tuna_rng_normal(&rng);
    memcpy(copy, a, sizeof a);
    REQUIRE(tuna_symmetric_eigen(a, n, w, v, NULL) == TUNA_OK, "eigen");
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            double s = 0;
            for (int j = 0; j < n; j++) s += v[i * n + j] * w[j] * v[k * n + j];
            worst = fmax(worst, fabs(s - copy[i * n + k]));
        }
    CHECK(worst < 1e-10, "V diag(w) V^T differs by %g", worst);
    for (int i = 1; i < n; i++) CHECK(w[i - 1] <= w[i], "ascending");
}

/* ---- exact match ---------------------------------------------------------------- */
TEST(answers_are_normalised_before_matching) {
    char buf[64];
    tuna_answer_normalize("  The  Red, circle!! ", buf, sizeof buf);
    CHECK(strcmp(buf, "red circle") == 0, "got '%s'", buf);
    tuna_answer_normalize("T-Shirt.", buf, sizeof buf);
    CHECK(strcmp(buf, "t shirt") == 0, "got '%s'", buf);
    tuna_answer_normalize("", buf, sizeof buf);
    CHECK(buf[0] == '\0', "empty");
    tuna_answer_normalize("abcdefgh", buf, 4);
    CHECK(strcmp(buf, "abc") == 0, "truncated to the buffer: '%s'", buf);
    CHECK(tuna_answer_matches("Red.", "red"), "case and punctuation");
    CHECK(tuna_answer_matches("a dress", "dress"), "article");
    CHECK(tuna_answer_matches("ankle  boot", "ankle boot"), "spaces");
    CHECK(tuna_answer_matches("42", " 42\n"), "digits");
    CHECK(!tuna_answer_matches("red circle", "red"), "extra words count");
    CHECK(!tuna_answer_matches("4 2", "42"), "split digits differ");
    CHECK(!tuna_answer_matches(NULL, "x") && tuna_answer_matches(NULL, ""), "NULL is empty");
}

/* ---- task files ---------------------------------------------------------------- */
static void expect_parse_error(const char *text, const char *needle) {
    tuna_eval_tasks t;
    tuna_error err = {0};
    tuna_status s = tuna_eval_tasks_parse(text, strlen(text), ".", &t, &err);
    CHECK(s != TUNA_OK, "accepted: %s", text);
    CHECK(strstr(err.message, needle) != NULL, "message '%s' lacks '%s' (input %s)", err.message, needle, text);
    CHECK(t.count == 0 && t.tasks == NULL, "left tasks behind");
}

TEST(task_parser_rejects_malformed_lines) {
    const char *ok_line = "{\"task\":\"reconstruct\",\"image\":\"x.png\"}\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s\n  \n%s{not json", ok_line, ok_line);
    expect_parse_error(buf, "line 5: not valid JSON");
    expect_parse_error("[1,2]", "line 1: not a JSON object");
    expect_parse_error("{\"image\":\"x.png\"}", "missing \"task\"");
    expect_parse_error("{\"task\":\"dance\"}", "unknown task");
    expect_parse_error("{\"task\":5}", "\"task\" must be a string");
    expect_parse_error("{\"task\":\"understand\",\"image\":\"a.png\",\"question\":\"q\"}", "missing \"answer\"");
    expect_parse_error("{\"task\":\"understand\",\"image\":\"a.png\",\"question\":\"q\",\"answer\":3}",
                       "\"answer\" must be a string");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\"}", "missing \"expect\"");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{}}", "names no objects");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{\"objects\":[{\"shape\":\"circle\","
                       "\"colour\":\"mauve\"}]}}",
                       "unknown colour");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{\"objects\":[{\"shape\":\"blob\","
                       "\"colour\":\"red\"}]}}",
                       "unknown shape");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{\"objects\":[{\"shape\":\"star\","
                       "\"colour\":\"red\"}],\"relation\":[\"left\",0,5]}}",
                       "bad expect.relation");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{\"objects\":3}}", "must be a list");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{\"class\":\"hat\"}}", "unknown class");
    expect_parse_error("{\"task\":\"generate\",\"prompt\":\"p\",\"expect\":{\"text\":\"this is far too long\"}}",
                       "expect.text");
    expect_parse_error("{\"task\":\"edit\",\"instruction\":\"i\",\"expect\":{\"class\":\"bag\"}}", "missing \"image\"");
    expect_parse_error("\n\n   \n", "no tasks");
    expect_parse_error("", "no tasks");
    const char nul[] = "{\"task\":\"reconstruct\",\"image\":\"x\0.png\"}";
    tuna_eval_tasks t;
    CHECK(tuna_eval_tasks_parse(nul, sizeof nul - 1, NULL, &t, NULL) != TUNA_OK, "NUL byte");
    tuna_error err = {0};
    CHECK(tuna_eval_tasks_load("tests/fixtures/eval/missing.jsonl", &t, &err) != TUNA_OK &&
              strstr(err.message, "missing.jsonl"),
          "missing file: %s", err.message);
}

TEST(task_parser_reads_every_kind) {
    const char *text =
        "{\"task\":\"understand\",\"id\":\"u\",\"image\":\"a.png\",\"question\":\"What?\",\"answer\":\"red\","
        "\"type\":\"colour\"}\r\n"
        "\n"
        "{\"task\":\"generate\",\"prompt\":\"a red star left of a blue circle\",\"category\":\"position\","
        "\"expect\":{\"objects\":[{\"shape\":\"star\",\"colour\":\"red\"},{\"shape\":\"circle\",\"colour\":\"blue\"}],"
        "\"relation\":[\"left\",0,1]}}\n"
        "{\"task\":\"edit\",\"image\":\"/abs/b.png\",\"instruction\":\"make the bag red\",\"kind\":\"recolour\","
        "\"expect\":{\"class\":\"bag\",\"colour\":\"red\"},\"target\":\"t.png\"}\n"
        "{\"task\":\"reference\",\"image\":\"r.png\"}";
    tuna_eval_tasks t;
    tuna_error err = {0};
    REQUIRE(tuna_eval_tasks_parse(text, strlen(text), "dir", &t, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(t.count == 4, "%d tasks", t.count);
    CHECK(t.tasks[0].kind == TUNA_TASK_UNDERSTAND && strcmp(t.tasks[0].image, "dir/a.png") == 0 &&
              strcmp(t.tasks[0].group, "colour") == 0 && strcmp(t.tasks[0].answer, "red") == 0,
          "understand");
    const tuna_expect *e = &t.tasks[1].expect;
    CHECK(t.tasks[1].line == 3 && strcmp(t.tasks[1].id, "line 3") == 0, "line numbers and default ids");
    CHECK(e->object_count == 2 && e->objects[0].shape == 3 && e->objects[1].colour == 2 && e->relation == 0 &&
              e->rel_a == 0 && e->rel_b == 1,
          "generate expectation");
    CHECK(strcmp(t.tasks[2].image, "/abs/b.png") == 0 && strcmp(t.tasks[2].target, "dir/t.png") == 0 &&
              t.tasks[2].expect.fashion_class == 8 && t.tasks[2].expect.colour == 0,
          "edit");
    CHECK(t.tasks[3].kind == TUNA_TASK_REFERENCE, "reference");
    tuna_eval_tasks_free(&t);
}

TEST(task_filter_keeps_kinds_and_caps_groups) {
    tuna_eval_tasks t;
    REQUIRE(load_tasks(&t), "tasks");
    int references = 0;
    for (int i = 0; i < t.count; i++) references += t.tasks[i].kind == TUNA_TASK_REFERENCE;
    tuna_eval_tasks_filter(&t, 1u << TUNA_TASK_GENERATE, 2);
    int gen = 0, refs = 0, other = 0, single = 0;
    for (int i = 0; i < t.count; i++) {
        gen += t.tasks[i].kind == TUNA_TASK_GENERATE;
        refs += t.tasks[i].kind == TUNA_TASK_REFERENCE;
        other += t.tasks[i].kind != TUNA_TASK_GENERATE && t.tasks[i].kind != TUNA_TASK_REFERENCE;
        single += t.tasks[i].kind == TUNA_TASK_GENERATE && strcmp(t.tasks[i].group, "single") == 0;
    }
    CHECK(gen == 7 * 2 && single == 2 && refs == references && other == 0,
          "%d generate (%d single), %d references, %d others", gen, single, refs, other);
    tuna_eval_tasks_free(&t);
}

/* ---- the runner -------------------------------------------------------------------- */
TEST(ground_truth_run_scores_the_judges) {
    tuna_eval_tasks tasks;
    tuna_judges j;
    REQUIRE(load_tasks(&tasks), "tasks");
    if (!load_judges(&j)) {
        tuna_eval_tasks_free(&tasks);
        CHECK(0, "judges");
        return;
    }
    tuna_eval_options o;
    tuna_eval_options_default(&o);
    o.ground_truth = 1;
    tuna_eval_report r;
    tuna_error err = {0};
    REQUIRE(tuna_eval_run(NULL, NULL, &j, &tasks, &o, NULL, &r, &err) == TUNA_OK, "%s", err.message);
    for (int i = 0; i < r.group_count; i++) {
        const tuna_eval_group *g = &r.groups[i];
        if (strncmp(g->name, "fashion", 7) == 0 || g->kind != TUNA_TASK_GENERATE) continue;
        CHECK(g->total > 0 && g->correct == g->total, "%s: %d/%d", g->name, g->correct, g->total);
    }
    CHECK(tuna_eval_section_score(&r, TUNA_TASK_UNDERSTAND) == 1.0, "answers match themselves");
    CHECK(r.reconstructions > 0 && r.psnr_sum / r.reconstructions == 100 && r.ssim_sum / r.reconstructions > 0.9999,
          "reconstruction of the image itself");
    CHECK(r.has_frechet && r.frechet >= 0 && r.feature_dims == j.fashion.hidden, "Frechet distance computed");
    CHECK(r.judge_test_accuracy > 0.8, "the judge's recorded test accuracy %g", r.judge_test_accuracy);
    char *json = tuna_eval_report_json(&r, &tasks);
    cJSON *doc = json ? cJSON_Parse(json) : NULL;
    CHECK(doc && cJSON_GetObjectItem(doc, "generate") && cJSON_GetArraySize(cJSON_GetObjectItem(doc, "results")) > 0,
          "JSON report");
    cJSON_Delete(doc);
    free(json);
    tuna_eval_report_free(&r);
    tuna_judges_free(&j);
    tuna_eval_tasks_free(&tasks);
}

/* The tiny fixture model with its embeddings widened to the fixture tokenizer's
 * vocabulary, written to dir: a random model that runs every task kind. */
static int write_test_model(const char *dir, const tuna_tokenizer *tok) {
    tuna_safetensors st;
    tuna_error err = {0};
    if (tuna_safetensors_open("tests/fixtures/model/tiny/model.safetensors", &st, &err) != TUNA_OK) return 0;
    int vocab = (int)tuna_tokenizer_vocab_size(tok);
    tuna_tensor *ts = calloc(st.count, sizeof *ts);
    const char **names = calloc(st.count, sizeof *names);
    float *wide[2] = {0};
    int w = 0;
    for (size_t i = 0; i < st.count; i++) {
        names[i] = st.entries[i].name;
        ts[i] = st.entries[i].tensor;
        if (strcmp(names[i], "tuna.lm_head.weight") == 0 || strcmp(names[i], "tuna.model.embed_tokens.weight") == 0) {
            int64_t shape[2] = {vocab, ts[i].shape[1]};
            wide[w] = malloc(sizeof(float) * (size_t)vocab * shape[1]);
            tuna_rng rng;
            tuna_rng_seed(&rng, (uint64_t)i);
            tuna_rng_fill_normal(&rng, wide[w], (long)(vocab * shape[1]), 0, 0.5f);
            tuna_tensor_init_view(&ts[i], TUNA_F32, 2, shape, wide[w++]);
        }
    }
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int ok = tuna_safetensors_write(path, ts, names, st.count, NULL, &err) == TUNA_OK;
    free(wide[0]), free(wide[1]), free(ts), free(names);
    tuna_safetensors_close(&st);
    /* config: the tiny one with this vocabulary and its special ids */
    char *text = NULL;
    size_t size = 0;
    cJSON *cfg = NULL;
    if (ok && tuna_read_file("tests/fixtures/model/tiny/config.json", 1 << 20, &text, &size, &err) == TUNA_OK)
        cfg = cJSON_Parse(text);
    free(text);
    if (!cfg) return 0;
    cJSON_ReplaceItemInObject(cfg, "vocab_size", cJSON_CreateNumber(vocab));
    cJSON *t = cJSON_GetObjectItem(cfg, "tokens");
    const char *keys[6] = {"bos", "eos", "boi", "eoi", "image_pad", "pad"};
    const char *specials[6] = {"<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                               "[PAD]"};
    for (int k = 0; k < 6; k++)
        cJSON_ReplaceItemInObject(t, keys[k], cJSON_CreateNumber(tuna_tokenizer_token_id(tok, specials[k])));
    char *out = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    ok = f && out && fputs(out, f) >= 0;
    if (f) fclose(f);
    free(out);
    cJSON_Delete(cfg);
    return ok;
}

TEST(random_model_runs_through_every_task_kind) {
    char dir[] = "/tmp/tuna_eval_test_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    tuna_tokenizer *tok = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_tokenizer_load(FIXTURES "/tokenizer.json", &tok, &err) == TUNA_OK, "%s", err.message);
    tuna_model model;
    int built = write_test_model(dir, tok);
    CHECK(built, "test model");
    if (built && tuna_model_load(dir, &model, &err) == TUNA_OK) {
        tuna_eval_tasks tasks;
        tuna_judges j;
        REQUIRE(tuna_eval_tasks_load(FIXTURES "/plumbing.jsonl", &tasks, &err) == TUNA_OK, "%s", err.message);
        CHECK(load_judges(&j), "judges");
        tuna_eval_options o;
        tuna_eval_options_default(&o);
        o.steps = 2;
        o.max_tokens = 4;
        o.samples = 2;
        tuna_threads pool;
        tuna_threads_init(&pool, 1);
        tuna_eval_report r;
        tuna_status s = tuna_eval_run(&model, tok, &j, &tasks, &o, &pool, &r, &err);
        CHECK(s == TUNA_OK, "%s", err.message);
        if (s == TUNA_OK) {
            int und = 0, gen = 0, edit = 0;
            for (int i = 0; i < r.group_count; i++) {
                const tuna_eval_group *g = &r.groups[i];
                if (g->kind == TUNA_TASK_UNDERSTAND) und += g->total;
                if (g->kind == TUNA_TASK_GENERATE) gen += g->total;
                if (g->kind == TUNA_TASK_EDIT) edit += g->total;
            }
            CHECK(und == 1 && gen == 3 * 2 && edit == 1, "counted %d understand, %d generated, %d edits", und, gen,
                  edit);
            CHECK(r.reconstructions == 1 && isfinite(r.psnr_sum), "reconstruction");
            CHECK(r.has_frechet && r.frechet_generated == 4 && r.frechet_real == 2, "FD of 4 generated vs 2 real");
            CHECK(r.results[1].output != NULL, "the answer is kept");
            tuna_eval_report_free(&r);
        }
        tuna_judges_free(&j);
        tuna_eval_tasks_free(&tasks);
        tuna_model_free(&model);
    } else {
        CHECK(0, "model load: %s", err.message);
    }
    tuna_tokenizer_free(tok);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- judge training and IDX files ------------------------------------------------------ */
TEST(classifier_training_learns_a_separable_problem) {
    /* class 0: bright top half, class 1: bright bottom half, plus noise */
    const int n = 400;
    uint8_t *x = malloc((size_t)n * TUNA_FASHION_INPUTS), *y = malloc((size_t)n);
    tuna_rng rng;
    tuna_rng_seed(&rng, 3);
    for (int i = 0; i < n; i++) {
        y[i] = (uint8_t)(i % 2);
        for (int p = 0; p < TUNA_FASHION_INPUTS; p++) {
            int top = p < TUNA_FASHION_INPUTS / 2;
            int v = (top == (y[i] == 0) ? 150 : 40) + (int)tuna_rng_below(&rng, 100);
            x[(size_t)i * TUNA_FASHION_INPUTS + p] = (uint8_t)v;
        }
    }
    tuna_fashion_mlp m;
    tuna_error err = {0};
    REQUIRE(tuna_fashion_mlp_init(&m, 8, 1, &err) == TUNA_OK, "%s", err.message);
    tuna_fashion_train_params p = {.epochs = 3, .batch = 32, .learning_rate = 1e-2f, .seed = 1};
    CHECK(tuna_fashion_mlp_train(&m, x, y, n, &p, &err) == TUNA_OK, "%s", err.message);
    double acc = tuna_fashion_mlp_accuracy(&m, x, y, n);
    CHECK(acc > 0.95, "accuracy %g", acc);
    char path[] = "/tmp/tuna_judge_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    m.test_accuracy = 0.5;
    tuna_fashion_mlp back;
    CHECK(tuna_fashion_mlp_save(path, &m, &err) == TUNA_OK && tuna_fashion_mlp_load(path, &back, &err) == TUNA_OK,
          "%s", err.message);
    CHECK(back.hidden == 8 && back.test_accuracy == 0.5 && memcmp(back.w1, m.w1, sizeof(float) * 8 * 784) == 0,
          "save/load round trip");
    tuna_fashion_mlp_free(&back);
    unlink(path);
    tuna_fashion_mlp_free(&m);
    free(x), free(y);
}

TEST(idx_files_load_and_refuse_bad_headers) {
    char path[] = "/tmp/tuna_idx_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const uint8_t good[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 7, 8, 9, 10};
    gzFile g = gzopen(path, "wb");
    gzwrite(g, good, sizeof good);
    gzclose(g);
    uint8_t *data = NULL;
    int dims[3], nd;
    tuna_error err = {0};
    CHECK(tuna_idx_load(path, &data, dims, &nd, &err) == TUNA_OK && nd == 3 && dims[0] == 2 && dims[2] == 2 &&
              data[3] == 10,
          "%s", err.message);
    free(data);
    FILE *f = fopen(path, "wb"); /* plain (not gzip), truncated data */
    fwrite(good, 1, sizeof good - 2, f);
    fclose(f);
    CHECK(tuna_idx_load(path, &data, dims, &nd, &err) != TUNA_OK && strstr(err.message, "truncated"), "%s",
          err.message);
    f = fopen(path, "wb");
    const uint8_t bad[] = {0, 0, 9, 1, 0, 0, 0, 1, 0};
    fwrite(bad, 1, sizeof bad, f);
    fclose(f);
    CHECK(tuna_idx_load(path, &data, dims, &nd, &err) != TUNA_OK && data == NULL, "float IDX refused");
    unlink(path);
}

/* ---- the small model's tokenizer ------------------------------------------------- */
TEST(small_tokenizer_matches_hugging_face) {
    tuna_tokenizer *tok = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_tokenizer_load("models/tokenizer/tuna2-small/tokenizer.json.gz", &tok, &err) == TUNA_OK, "%s",
            err.message);
    CHECK(tuna_tokenizer_vocab_size(tok) == 2048, "vocab %d", (int)tuna_tokenizer_vocab_size(tok));
    const char *specials[8] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                               "<|image_pad|>", "[PAD]", "<image>"};
    for (int k = 0; k < 8; k++)
        CHECK(tuna_tokenizer_token_id(tok, specials[k]) == 2040 + k, "%s", specials[k]);
    char *text = NULL;
    size_t size = 0;
    REQUIRE(tuna_read_file(FIXTURES "/small_tokenizer_golden.jsonl", 1 << 20, &text, &size, &err) == TUNA_OK, "%s",
            err.message);
    int lines = 0, same = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *t = cJSON_GetObjectItem(o, "text"), *ids = cJSON_GetObjectItem(o, "ids");
        tuna_ids got = {0};
        if (cJSON_IsString(t) && cJSON_IsArray(ids) &&
            tuna_tokenizer_encode(tok, t->valuestring, strlen(t->valuestring), &got, &err) == TUNA_OK) {
            int n = cJSON_GetArraySize(ids), eq = n == (int)got.len;
            for (int i = 0; eq && i < n; i++) eq = cJSON_GetArrayItem(ids, i)->valueint == got.data[i];
            same += eq;
            if (!eq) fprintf(stderr, "  differs: %s\n", t->valuestring);
        }
        lines++;
        tuna_ids_free(&got);
        cJSON_Delete(o);
    }
    CHECK(lines > 50 && same == lines, "%d of %d golden encodings match", same, lines);
    free(text);
    tuna_tokenizer_free(tok);
}

/* ---- the command ------------------------------------------------------------------ */
static int tuna_binary(char *buf, size_t cap) {
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    return snprintf(buf, cap, "%s/../tuna", exe) < (int)cap;
}

static int run_command(const char *cmd) {
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

TEST(cli_reports_and_fails_cleanly) {
    char bin[2200], cmd[4096], json[] = "/tmp/tuna_eval_json_XXXXXX";
    REQUIRE(tuna_binary(bin, sizeof bin), "binary path");
    int fd = mkstemp(json);
    close(fd);
    snprintf(cmd, sizeof cmd, "%s eval -q --ground-truth " FIXTURES "/tasks.jsonl --json %s > /dev/null", bin, json);
    CHECK(run_command(cmd) == 0, "ground-truth run");
    char *text = NULL;
    size_t size = 0;
    cJSON *doc = NULL;
    if (tuna_read_file(json, 1 << 24, &text, &size, NULL) == TUNA_OK) doc = cJSON_Parse(text);
    const cJSON *gen = cJSON_GetObjectItem(doc, "generate");
    const cJSON *overall = cJSON_GetObjectItem(gen, "overall");
    CHECK(cJSON_IsNumber(overall) && overall->valuedouble > 0.9, "JSON report with the generation score");
    cJSON_Delete(doc);
    free(text);
    unlink(json);
    FILE *f = fopen(json, "w");
    fputs("{\"task\":\"generate\",\"prompt\":\"x\",\"expect\":{\"objects\":[]}}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s eval -q --ground-truth %s 2> /dev/null", bin, json);
    CHECK(run_command(cmd) == 1, "a bad task file exits 1");
    snprintf(cmd, sizeof cmd, "%s eval -q 2> /dev/null", bin);
    CHECK(run_command(cmd) == 2, "no task file is a usage error");
    snprintf(cmd, sizeof cmd, "%s eval -q --steps 0 x.jsonl 2> /dev/null", bin);
    CHECK(run_command(cmd) == 2, "bad --steps");
    unlink(json);
}

int main(void) {
    RUN(scene_and_text_judges_pass_every_ground_truth_scene);
    RUN(fashion_judge_on_real_test_items);
    RUN(detector_finds_colours_shapes_and_positions);
    RUN(frechet_of_a_set_with_itself_is_zero);
    RUN(frechet_grows_with_a_shift);
    RUN(frechet_matches_the_gaussian_closed_form);
    RUN(symmetric_eigen_reconstructs_the_matrix);
    RUN(answers_are_normalised_before_matching);
    RUN(task_parser_rejects_malformed_lines);
    RUN(task_parser_reads_every_kind);
    RUN(task_filter_keeps_kinds_and_caps_groups);
    RUN(ground_truth_run_scores_the_judges);
    RUN(random_model_runs_through_every_task_kind);
    RUN(classifier_training_learns_a_separable_problem);
    RUN(idx_files_load_and_refuse_bad_headers);
    RUN(small_tokenizer_matches_hugging_face);
    RUN(cli_reports_and_fails_cleanly);
    return test_summary();
}
