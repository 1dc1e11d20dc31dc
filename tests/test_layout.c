/* The sequence layouts of SPEC section 3 (src/model/layout.h), shared by
 * inference and training: ids and labels position by position. */
#include "test.h"
#include "model/layout.h"

static const tuna_special_tokens TK = {.bos = 100, .eos = 101, .boi = 102, .eoi = 103, .image_pad = 104, .pad = 105};
#define I TUNA_IGNORE_LABEL

static int same(const tuna_ids *v, const int32_t *want, size_t n) {
    if (v->len != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (v->data[i] != want[i]) return 0;
    return 1;
}

TEST(patch_count_checks_the_size) {
    int n = 0;
    tuna_error err = {0};
    CHECK(tuna_layout_patches(8, 12, 4, &n, &err) == TUNA_OK && n == 6, "2x3 patches, got %d", n);
    CHECK(tuna_layout_patches(8, 10, 4, &n, &err) == TUNA_ERR_INVALID, "10 is not a multiple of 4");
    CHECK(tuna_layout_patches(0, 8, 4, &n, &err) == TUNA_ERR_INVALID, "zero height");
}

TEST(t2i_with_and_without_labels) {
    tuna_ids ids = {0}, labels = {0};
    tuna_layout l = {&TK, &ids, &labels};
    const int32_t caption[] = {7, 8};
    tuna_error err = {0};
    REQUIRE(tuna_layout_t2i(&l, caption, 2, 1, 2, &err) == TUNA_OK, "%s", err.message);
    const int32_t want[] = {100, 7, 8, 105, 102, 104, 104, 104, 103, 101};
    const int32_t want_labels[] = {I, I, I, I, I, I, I, I, I, I};
    CHECK(same(&ids, want, 10), "[BOS] caption [PAD] [BOI] t+2 slots [EOI] [EOS]");
    CHECK(same(&labels, want_labels, 10), "every label ignored");
    tuna_ids only = {0};
    tuna_layout l2 = {&TK, &only, NULL};
    REQUIRE(tuna_layout_t2i(&l2, caption, 2, 1, 2, &err) == TUNA_OK, "%s", err.message);
    CHECK(same(&only, want, 10), "the same ids without labels");
    tuna_ids_free(&ids);
    tuna_ids_free(&labels);
    tuna_ids_free(&only);
}

TEST(edit_has_two_segments) {
    tuna_ids ids = {0};
    tuna_layout l = {&TK, &ids, NULL};
    const int32_t text[] = {9};
    tuna_error err = {0};
    REQUIRE(tuna_layout_edit(&l, 1, text, 1, 2, &err) == TUNA_OK, "%s", err.message);
    const int32_t want[] = {100, 102, 104, 104, 103, 9, 102, 104, 104, 104, 103, 101};
    CHECK(same(&ids, want, 12), "[BOS] source segment, instruction, target segment [EOS]");
    tuna_ids_free(&ids);
}

TEST(understanding_training_layout_labels) {
    tuna_ids ids = {0}, labels = {0};
    tuna_layout l = {&TK, &ids, &labels};
    const int32_t chat[] = {5, 6};
    tuna_error err = {0};
    REQUIRE(tuna_layout_understanding(&l, 1, chat, 2, &err) == TUNA_OK, "%s", err.message);
    const int32_t want[] = {100, 102, 104, 104, 103, 5, 6, 101};
    const int32_t want_labels[] = {100, 102, I, I, 103, 5, 6, 101};
    CHECK(same(&ids, want, 8), "[BOS] segment chat [EOS]");
    CHECK(same(&labels, want_labels, 8), "format_sequence_und labels");
    tuna_ids_free(&ids);
    tuna_ids_free(&labels);
}

TEST(chat_placeholders_become_segments) {
    tuna_ids ids = {0};
    tuna_layout l = {&TK, &ids, NULL};
    const int32_t chat[] = {1, 999, 2, 999, 3};
    const size_t pos[] = {1, 3};
    const int patches[] = {1, 2};
    tuna_error err = {0};
    REQUIRE(tuna_layout_chat(&l, chat, 5, pos, 2, patches, &err) == TUNA_OK, "%s", err.message);
    const int32_t want[] = {1, 102, 104, 104, 103, 2, 102, 104, 104, 104, 103, 3};
    CHECK(same(&ids, want, 12), "each <image> replaced by its own segment");
    tuna_ids_free(&ids);
}

int main(void) {
    RUN(patch_count_checks_the_size);
    RUN(t2i_with_and_without_labels);
    RUN(edit_has_two_segments);
    RUN(understanding_training_layout_labels);
    RUN(chat_placeholders_become_segments);
    return test_summary();
}
