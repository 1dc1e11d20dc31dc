/* Input preparation shared by the CLI and the server (src/infer/prepare.h):
 * model and tokenizer lookup, image size choice, images as [3,H,W] tensors. */
#include "test.h"
#include "infer/prepare.h"
#include "io/image.h"

#include <stdlib.h>

TEST(model_dir_prefers_given_then_environment) {
    char buf[4096];
    CHECK(strcmp(tuna_model_dir("some/dir", buf, sizeof buf), "some/dir") == 0, "the given directory wins");
    setenv("TUNA_MODEL", "from/env", 1);
    CHECK(strcmp(tuna_model_dir(NULL, buf, sizeof buf), "from/env") == 0, "then $TUNA_MODEL");
    unsetenv("TUNA_MODEL");
    const char *d = tuna_model_dir(NULL, buf, sizeof buf);
    CHECK(strstr(d, "models/tuna2-small") != NULL, "then the bundled model, got %s", d);
}

TEST(tokenizer_of_the_model_directory_is_found) {
    char buf[4096];
    const char *t = tuna_tokenizer_for_model(NULL, "models/tuna2-small", buf, sizeof buf);
    CHECK(t && strcmp(t, "models/tuna2-small/tokenizer.json.gz") == 0, "got %s", t ? t : "(null)");
    t = tuna_tokenizer_for_model("given.json", "models/tuna2-small", buf, sizeof buf);
    CHECK(t && strcmp(t, "given.json") == 0, "the given path wins");
}

TEST(model_and_tokenizer_load_together_or_not_at_all) {
    tuna_model m;
    tuna_tokenizer *tok = (tuna_tokenizer *)1;
    tuna_error err = {0};
    REQUIRE(tuna_load_model_and_tokenizer("models/tuna2-small", NULL, &m, &tok, &err) == TUNA_OK, "%s",
            err.message);
    CHECK(tok != NULL && m.config.vocab_size == 2048, "model and its own tokenizer");
    tuna_tokenizer_free(tok);
    tuna_model_free(&m);
    tok = (tuna_tokenizer *)1;
    CHECK(tuna_load_model_and_tokenizer("models/tuna2-small", "no/such/tokenizer.json", &m, &tok, &err) != TUNA_OK,
          "a missing tokenizer fails");
    CHECK(tok == NULL, "and leaves nothing loaded");
    CHECK(tuna_load_model_and_tokenizer("no/such/model", NULL, &m, &tok, &err) != TUNA_OK, "a missing model fails");
}

TEST(weight_dtype_names) {
    tuna_dtype d;
    tuna_error err = {0};
    CHECK(tuna_weight_dtype_from_name("f32", &d, &err) == TUNA_OK && d == TUNA_F32, "f32");
    CHECK(tuna_weight_dtype_from_name("bf16", &d, &err) == TUNA_OK && d == TUNA_BF16, "bf16");
    CHECK(tuna_weight_dtype_from_name("f16", &d, &err) == TUNA_ERR_INVALID, "f16 is not a weight dtype choice");
}

TEST(image_size_choice) {
    int h, w;
    tuna_pick_image_size(300, 451, 16, 64, 96, &h, &w);
    CHECK(h == 64 && w == 96, "an explicit size wins: %dx%d", h, w);
    tuna_pick_image_size(300, 451, 16, 0, 0, &h, &w);
    CHECK(h == 448 && w == 576, "patch 16: the nearest 512-class bucket, got %dx%d", h, w);
    tuna_pick_image_size(61, 97, 4, 0, 0, &h, &w);
    CHECK(h == 60 && w == 96, "other patches: rounded down to the patch, got %dx%d", h, w);
}

TEST(image_becomes_a_tensor_in_minus_one_to_one) {
    float *chw = NULL;
    int h = 0, w = 0;
    tuna_error err = {0};
    REQUIRE(tuna_prepare_image("tests/fixtures/image/resize_src.png", 4, 0, 0, &chw, &h, &w, &err) == TUNA_OK,
            "%s", err.message);
    CHECK(h == 60 && w == 96, "size %dx%d", h, w);
    float lo = 1, hi = -1;
    for (long i = 0; i < 3L * h * w; i++) {
        if (chw[i] < lo) lo = chw[i];
        if (chw[i] > hi) hi = chw[i];
    }
    CHECK(lo >= -1 && hi <= 1 && hi > lo, "values in [-1, 1]: [%g, %g]", lo, hi);
    free(chw);
    chw = (float *)1;
    CHECK(tuna_prepare_image("tests/fixtures/image/resize_src.png", 4, 30, 30, &chw, &h, &w, &err) ==
              TUNA_ERR_INVALID, "a size that is not a multiple of the patch fails");
    CHECK(chw == NULL, "with no tensor");
    CHECK(tuna_prepare_image("tests/fixtures/image/no_such.png", 4, 0, 0, &chw, &h, &w, &err) != TUNA_OK,
          "a missing file fails");
}

int main(void) {
    RUN(model_dir_prefers_given_then_environment);
    RUN(tokenizer_of_the_model_directory_is_found);
    RUN(model_and_tokenizer_load_together_or_not_at_all);
    RUN(weight_dtype_names);
    RUN(image_size_choice);
    RUN(image_becomes_a_tensor_in_minus_one_to_one);
    return test_summary();
}
