/* Input preparation shared by the CLI and the server (src/infer/prepare.h):
 * model and tokenizer lookup, image size choice, images as [3,H,W] tensors. */
#include "test.h"
#include "infer/prepare.h"
#include "io/image.h"
#include "infer/prompts.h"
#include "model/layout.h"

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

TEST(tokenizer_that_does_not_fit_the_model_is_refused_up_front) {
    /* The 151k-token Qwen tokenizer with the 2048-token bundled model: refused
     * when loading, not at the first prompt ("token id ... outside [0, 2048)"). */
    tuna_model m;
    tuna_tokenizer *tok = (tuna_tokenizer *)1;
    tuna_error err = {0};
    CHECK(tuna_load_model_and_tokenizer("models/tuna2-small", "models/tokenizer/tuna2-tokenizer.json.gz", &m, &tok,
                                        &err) == TUNA_ERR_INVALID,
          "mismatch refused");
    CHECK(strstr(err.message, "vocabulary is 2048") != NULL, "and said so: %s", err.message);
    CHECK(tok == NULL, "nothing left loaded");
    /* a model whose special tokens are not the tokenizer's */
    tuna_tokenizer *own = NULL;
    REQUIRE(tuna_tokenizer_load("models/tuna2-small/tokenizer.json.gz", &own, &err) == TUNA_OK, "%s", err.message);
    tuna_config c;
    memset(&c, 0, sizeof c);
    c.vocab_size = 4096;
    c.tokens = (tuna_special_tokens){2041, 2042, 2043, 2044, 2045, 3000};
    CHECK(tuna_tokenizer_check_model(own, &c, &err) == TUNA_ERR_INVALID && strstr(err.message, "pad token 3000"),
          "a special token outside the tokenizer: %s", err.message);
    c.tokens.pad = 2046;
    CHECK(tuna_tokenizer_check_model(own, &c, &err) == TUNA_OK, "a larger embedding table is fine: %s", err.message);
    tuna_tokenizer_free(own);
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
    tuna_config c16, c4;
    tuna_config_official_7b(&c16);
    memset(&c4, 0, sizeof c4);
    c4.patch_size = 4;
    tuna_image_request exact = {.height = 64, .width = 96}, native = {.native = 1};
    tuna_pick_image_size(&c16, 300, 451, &exact, &h, &w);
    CHECK(h == 64 && w == 96, "an explicit size wins: %dx%d", h, w);
    tuna_pick_image_size(&c16, 300, 451, NULL, &h, &w);
    CHECK(h == 448 && w == 576, "the official model: the nearest 512-class bucket, got %dx%d", h, w);
    tuna_pick_image_size(&c4, 61, 97, NULL, &h, &w);
    CHECK(h == 60 && w == 96, "a model without recorded sizes: rounded down to the patch, got %dx%d", h, w);
    c4.image_size_count = 2;
    c4.image_sizes[0] = (tuna_image_size){32, 32};
    c4.image_sizes[1] = (tuna_image_size){32, 48};
    tuna_pick_image_size(&c4, 300, 451, NULL, &h, &w);
    CHECK(h == 32 && w == 48, "recorded sizes: the one nearest the aspect ratio, got %dx%d", h, w);
    tuna_pick_image_size(&c4, 1, 1, NULL, &h, &w);
    CHECK(h == 32 && w == 32, "a 1x1 image gets a trained size, got %dx%d", h, w);
    tuna_pick_image_size(&c4, 300, 451, &native, &h, &w);
    CHECK(h == 300 && w == 448, "native: the image's own size on the patch grid, got %dx%d", h, w);
    tuna_pick_image_size(&c4, 1, 1, &native, &h, &w);
    CHECK(h == 4 && w == 4, "native never goes below one patch, got %dx%d", h, w);
    tuna_default_generation_size(&c4, &h, &w);
    CHECK(h == 32 && w == 32, "generation: the first trained size");
    c4.image_size_count = 0;
    tuna_default_generation_size(&c4, &h, &w);
    CHECK(h == 32 && w == 32, "generation without recorded sizes: 8 patches");
    tuna_default_generation_size(&c16, &h, &w);
    CHECK(h == 512 && w == 512, "official: 512x512");
    CHECK(strcmp(tuna_default_negative(&c16, 0), tuna_default_negative_t2i) == 0, "the reference's negative");
    CHECK(strcmp(tuna_default_negative(&c16, 1), tuna_default_negative_edit) == 0, "the reference's edit negative");
    snprintf(c4.negative_prompt, sizeof c4.negative_prompt, "an image");
    c4.has_negative_prompt = 1;
    CHECK(strcmp(tuna_default_negative(&c4, 0), "an image") == 0 && strcmp(tuna_default_negative(&c4, 1), "an image") == 0,
          "a recorded negative prompt serves every command");
}

TEST(image_becomes_a_tensor_in_minus_one_to_one) {
    float *chw = NULL;
    int h = 0, w = 0;
    tuna_error err = {0};
    tuna_config c;
    memset(&c, 0, sizeof c);
    c.patch_size = 4;
    REQUIRE(tuna_prepare_image("tests/fixtures/image/resize_src.png", &c, NULL, &chw, &h, &w, &err) == TUNA_OK, "%s",
            err.message);
    CHECK(h == 60 && w == 96, "size %dx%d", h, w);
    float lo = 1, hi = -1;
    for (long i = 0; i < 3L * h * w; i++) {
        if (chw[i] < lo) lo = chw[i];
        if (chw[i] > hi) hi = chw[i];
    }
    CHECK(lo >= -1 && hi <= 1 && hi > lo, "values in [-1, 1]: [%g, %g]", lo, hi);
    free(chw);
    chw = (float *)1;
    tuna_image_request bad = {.height = 30, .width = 30};
    CHECK(tuna_prepare_image("tests/fixtures/image/resize_src.png", &c, &bad, &chw, &h, &w, &err) == TUNA_ERR_INVALID,
          "a size that is not a multiple of the patch fails");
    CHECK(chw == NULL, "with no tensor");
    CHECK(tuna_prepare_image("tests/fixtures/image/no_such.png", &c, NULL, &chw, &h, &w, &err) != TUNA_OK,
          "a missing file fails");
}

TEST(decode_errors_do_not_echo_the_file) {
    /* a data record may name any file: its bytes must not end up in a warning */
    const char *secret = "root:x:0:0:root:/root:/bin/bash\n";
    tuna_image img;
    tuna_error err = {0};
    CHECK(tuna_image_decode_memory((const uint8_t *)secret, strlen(secret), NULL, &img, &err) == TUNA_ERR_FORMAT,
          "not an image");
    CHECK(!strstr(err.message, "72 6f") && !strstr(err.message, "root"), "the message names no content: %s",
          err.message);
}

int main(void) {
    RUN(model_dir_prefers_given_then_environment);
    RUN(tokenizer_of_the_model_directory_is_found);
    RUN(model_and_tokenizer_load_together_or_not_at_all);
    RUN(tokenizer_that_does_not_fit_the_model_is_refused_up_front);
    RUN(weight_dtype_names);
    RUN(image_size_choice);
    RUN(image_becomes_a_tensor_in_minus_one_to_one);
    RUN(decode_errors_do_not_echo_the_file);
    return test_summary();
}
