/* Training data (src/train/data.h): layouts and labels of the four streams,
 * noise/t/masks, bad-record skipping, reproducibility and resume of the loader.
 * Fixtures (tiny PNGs + JSONL) are generated into a temporary directory. */
#include "test.h"

#include "io/image.h"
#include "text/chat.h"
#include "train/data.h"

#include <unistd.h>

static tuna_tokenizer *tok;
static char dir[256];

static void write_png(const char *name, int w, int h, int seed) {
    tuna_image img;
    tuna_image_alloc(&img, w, h, NULL);
    for (int i = 0; i < w * h * 3; i++) img.rgb[i] = (uint8_t)((i * 37 + seed * 101) & 255);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tuna_image_write_png(path, &img, NULL);
    tuna_image_free(&img);
}

static void write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void make_fixtures(void) {
    snprintf(dir, sizeof dir, "/tmp/tuna_test_data_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/imgs", dir);
    if (system(cmd) != 0) return;
    write_png("imgs/a.png", 40, 24, 1);
    write_png("imgs/b.png", 24, 40, 2);
    write_png("imgs/c.png", 32, 32, 3);
    write_text("imgs/broken.png", "not a png at all");
    write_text("t2i.jsonl", "{\"image\": \"imgs/a.png\", \"caption\": \"a red cat\"}\n"
                            "\n"
                            "{\"image\": \"imgs/missing.png\", \"caption\": \"gone\"}\n"
                            "{\"image\": \"imgs/b.png\", \"caption\": \"\"}\n"
                            "{\"image\": \"imgs/broken.png\", \"caption\": \"broken\"}\n"
                            "{not json\n"
                            "{\"image\": \"imgs/c.png\", \"caption\": \"a blue dog\"}\n");
    write_text("edit.jsonl", "{\"raw_image\": \"imgs/a.png\", \"out_image\": \"imgs/b.png\", \"instruction\": \"make it blue\"}\n");
    write_text("mmu.jsonl", "{\"image\": \"imgs/c.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
                            "\"<image>\\nWhat is this?\"}, {\"from\": \"gpt\", \"value\": \"A cat.\"}]}\n");
    write_text("text.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", "
                             "\"value\": \"Hello!\"}, {\"from\": \"human\", \"value\": \"Bye\"}, {\"from\": \"gpt\", "
                             "\"value\": \"Bye!\"}]}\n");
}

static void base_config(tuna_data_config *c, int t2i, int edit, int mmu, int text) {
    tuna_data_config_default(c);
    static char paths[4][512];
    const char *files[4] = {"t2i.jsonl", "edit.jsonl", "mmu.jsonl", "text.jsonl"};
    int on[4] = {t2i, edit, mmu, text};
    for (int i = 0; i < 4; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, files[i]);
        c->streams[i].jsonl_path = on[i] ? paths[i] : NULL;
    }
    c->buckets[0] = (tuna_bucket){32, 32};
    c->bucket_count = 1;
    c->tokenizer = tok;
    c->seed = 1234;
    c->quiet = 1;
}

static tuna_train_batch *next(tuna_data *d) {
    tuna_train_batch *b = NULL;
    tuna_error err = {0};
    if (tuna_data_next(d, &b, &err) != TUNA_OK) fprintf(stderr, "  next: %s\n", err.message);
    return b;
}

static int all_ignored(const int32_t *labels, int n) {
    for (int i = 0; i < n; i++)
        if (labels[i] != -100) return 0;
    return 1;
}

TEST(t2i_layout_noise_and_skips) {
    tuna_data_config c;
    base_config(&c, 1, 0, 0, 0);
    tuna_data *d = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_data_open(&c, NULL, &d, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_data_stream_size(d, TUNA_TASK_T2I) == 6, "records %lld", (long long)tuna_data_stream_size(d, TUNA_TASK_T2I));
    int seen_a = 0, seen_c = 0;
    tuna_data_state last = {0};
    for (int k = 0; k < 6; k++) {
        tuna_train_batch *b = next(d);
        REQUIRE(b && b->count == 1 && b->task == TUNA_TASK_T2I, "batch");
        tuna_train_sample *s = &b->samples[0];
        tuna_ids cap = {0};
        const char *text = s->record == 0 ? "a red cat" : "a blue dog";
        seen_a += s->record == 0;
        seen_c += s->record == 5;
        CHECK(s->record == 0 || s->record == 5, "bad record %lld delivered", (long long)s->record);
        tuna_tokenizer_encode(tok, text, strlen(text), &cap, NULL);
        int n = (int)cap.len;
        REQUIRE(s->length == 1 + n + 1 + 5 + 1 + 1, "length %d (caption %d)", s->length, n);
        CHECK(s->input_ids[0] == 151644 && s->input_ids[1 + n] == 151652 && s->input_ids[1 + n + 6] == 151653 &&
                  s->input_ids[s->length - 1] == 151645,
              "specials");
        for (int i = 0; i < n; i++) CHECK(s->input_ids[1 + i] == cap.data[i], "caption id %d", i);
        for (int i = 0; i < 5; i++) CHECK(s->input_ids[2 + n + i] == 151655, "slot %d", i);
        CHECK(all_ignored(s->labels, s->length), "t2i labels must all be -100");
        CHECK(s->image_count == 1 && s->flow[0] == 1 && s->heights[0] == 32 && s->widths[0] == 32, "image");
        CHECK(s->t[0] > 0 && s->t[0] < 1, "t %g", s->t[0]);
        /* z = t x + (1-t) e with e ~ N(0, 4): recover e and check its spread */
        double e2 = 0, lo = 1, hi = -1;
        for (int i = 0; i < 3 * 32 * 32; i++) {
            double e = (s->images[0][i] - s->t[0] * s->targets[0][i]) / (1 - s->t[0]);
            e2 += e * e;
            if (s->targets[0][i] < lo) lo = s->targets[0][i];
            if (s->targets[0][i] > hi) hi = s->targets[0][i];
        }
        e2 /= 3 * 32 * 32;
        CHECK(e2 > 3.0 && e2 < 5.0, "noise variance %g (want ~4)", e2);
        CHECK(lo >= -1 && hi <= 1 && hi > lo, "targets in [-1, 1]");
        if (s->masks[0]) {
            int m = 0;
            for (int i = 0; i < 4; i++) m += s->masks[0][i];
            CHECK(m == s->mask_counts[0] && m == 1, "mask count %d (N=4: int(4*0.3) = 1 at most)", m);
        }
        last = b->state_after;
        tuna_ids_free(&cap);
        tuna_train_batch_free(b);
    }
    CHECK(seen_a == 3 && seen_c == 3, "each good record once per epoch: %d %d", seen_a, seen_c);
    CHECK(last.skipped[TUNA_TASK_T2I] >= 8 && last.skipped[TUNA_TASK_T2I] <= 12, "4 bad records per epoch skipped: %lld", (long long)last.skipped[0]);
    CHECK(last.epoch[TUNA_TASK_T2I] == 2, "epoch %lld", (long long)last.epoch[0]);
    tuna_data_close(d);
}

TEST(understanding_reference_and_inference_layouts) {
    for (int layout = 0; layout < 2; layout++) {
        tuna_data_config c;
        base_config(&c, 0, 0, 1, 0);
        c.und_inference_layout = layout;
        tuna_data *d = NULL;
        tuna_error err = {0};
        REQUIRE(tuna_data_open(&c, NULL, &d, &err) == TUNA_OK, "%s", err.message);
        tuna_train_batch *b = next(d);
        REQUIRE(b, "batch");
        tuna_train_sample *s = &b->samples[0];
        tuna_chat_message msgs[2] = {{TUNA_ROLE_USER, "<image>\nWhat is this?"}, {TUNA_ROLE_ASSISTANT, "A cat."}};
        tuna_chat_tokens chat;
        REQUIRE(tuna_chat_encode(tok, msgs, 2, NULL, &chat, &err) == TUNA_OK, "%s", err.message);
        int n = (int)chat.ids.len;
        CHECK(s->image_count == 1 && s->flow[0] == 0, "image not in flow");
        CHECK(s->t[0] == 1.0f || (s->t[0] >= 0.9f && s->t[0] < 1.0f), "t %g", s->t[0]);
        if (layout == 0) {
            /* [BOS][BOI][t][4][EOI] chat [EOS]; CE on BOI, EOI, the chat and EOS */
            REQUIRE(s->length == 1 + 1 + 5 + 1 + n + 1, "length %d", s->length);
            CHECK(s->input_ids[0] == 151644 && s->input_ids[1] == 151652 && s->input_ids[7] == 151653, "head");
            CHECK(s->labels[1] == 151652 && s->labels[7] == 151653 && s->labels[s->length - 1] == 151645, "labels");
            for (int i = 2; i < 7; i++) CHECK(s->labels[i] == -100, "slot label %d", i);
            for (int i = 0; i < n; i++)
                CHECK(s->input_ids[8 + i] == chat.ids.data[i] && s->labels[8 + i] == chat.ids.data[i], "chat %d", i);
        } else {
            /* chat with <image> replaced by the segment (length +6), CE on the assistant block */
            REQUIRE(s->length == n - 1 + 7, "length %d", s->length);
            int at = (int)chat.image_pos[0];
            CHECK(s->input_ids[at] == 151652 && s->input_ids[at + 6] == 151653, "segment at <image>");
            int labelled = 0;
            for (int i = 0; i < s->length; i++) labelled += s->labels[i] != -100;
            /* "\n<|im_start|>assistant\nA cat.<|im_end|>" + trailing "\n" */
            int from = -1;
            for (int i = 0; i < s->length; i++)
                if (s->labels[i] != -100) { from = i; break; }
            REQUIRE(from > 0, "no label");
            CHECK(s->input_ids[from + 1] == 151644, "labels start at the newline before <|im_start|>assistant");
            CHECK(labelled == s->length - from, "labels run to the end (%d of %d)", labelled, s->length - from);
        }
        tuna_chat_tokens_free(&chat);
        tuna_train_batch_free(b);
        tuna_data_close(d);
    }
}

TEST(edit_and_text_layouts) {
    tuna_data_config c;
    base_config(&c, 0, 1, 0, 0);
    tuna_data *d = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_data_open(&c, NULL, &d, &err) == TUNA_OK, "%s", err.message);
    tuna_train_batch *b = next(d);
    REQUIRE(b, "batch");
    tuna_train_sample *s = &b->samples[0];
    tuna_ids ins = {0};
    tuna_tokenizer_encode(tok, "make it blue", 12, &ins, NULL);
    int n = (int)ins.len;
    REQUIRE(s->length == 1 + 7 + n + 7 + 1, "edit length %d", s->length);
    CHECK(s->input_ids[1] == 151652 && s->input_ids[7] == 151653 && s->input_ids[8 + n] == 151652 &&
              s->input_ids[8 + n + 6] == 151653 && s->input_ids[s->length - 1] == 151645,
          "edit specials");
    CHECK(all_ignored(s->labels, s->length), "edit labels");
    CHECK(s->image_count == 2 && s->flow[0] == 0 && s->flow[1] == 1 && s->t[0] == 1.0f && s->t[1] < 1.0f,
          "flags/t");
    CHECK(memcmp(s->images[0], s->targets[0], 3 * 32 * 32 * sizeof(float)) == 0, "source fed clean");
    tuna_ids_free(&ins);
    tuna_train_batch_free(b);
    tuna_data_close(d);

    base_config(&c, 0, 0, 0, 1);
    REQUIRE(tuna_data_open(&c, NULL, &d, &err) == TUNA_OK, "%s", err.message);
    b = next(d);
    REQUIRE(b, "batch");
    s = &b->samples[0];
    CHECK(s->image_count == 0, "text has no image");
    /* the assistant blocks and the trailing newline are the only labels */
    char *decoded = NULL;
    int32_t kept[256];
    int nk = 0;
    for (int i = 0; i < s->length && nk < 256; i++)
        if (s->labels[i] != -100) kept[nk++] = s->labels[i];
    tuna_tokenizer_decode(tok, kept, (size_t)nk, 0, &decoded, NULL, NULL);
    CHECK(decoded && !strcmp(decoded, "\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\nBye!<|im_end|>\n"),
          "labelled text: [%s]", decoded ? decoded : "");
    free(decoded);
    tuna_train_batch_free(b);
    tuna_data_close(d);
}

TEST(conversation_label_rule) {
    /* ids with eos = 9: system(1 9) user(2 9) assistant(3 9) tail(4) */
    int32_t ids[] = {1, 9, 2, 2, 9, 3, 3, 9, 4};
    int32_t labels[9];
    CHECK(tuna_conversation_labels(ids, 9, 9, labels), "has eos");
    int32_t want[] = {-100, -100, -100, -100, -100, 3, 3, 9, 4};
    for (int i = 0; i < 9; i++) CHECK(labels[i] == want[i], "label %d = %d want %d", i, labels[i], want[i]);
    /* ends after a user turn, not second to last: tail masked */
    int32_t ids2[] = {1, 9, 2, 9, 5, 5};
    int32_t l2[6];
    tuna_conversation_labels(ids2, 6, 9, l2);
    CHECK(all_ignored(l2, 6), "user-final tail masked");
    int32_t none[] = {1, 2};
    CHECK(!tuna_conversation_labels(none, 2, 9, l2), "no eos");
}

static int same_batch(const tuna_train_batch *a, const tuna_train_batch *b) {
    if (a->task != b->task || a->count != b->count) return 0;
    for (int i = 0; i < a->count; i++) {
        const tuna_train_sample *x = &a->samples[i], *y = &b->samples[i];
        if (x->length != y->length || x->image_count != y->image_count || x->record != y->record) return 0;
        if (memcmp(x->input_ids, y->input_ids, (size_t)x->length * 4) || memcmp(x->labels, y->labels, (size_t)x->length * 4))
            return 0;
        for (int k = 0; k < x->image_count; k++) {
            size_t n = (size_t)3 * x->heights[k] * x->widths[k] * sizeof(float);
            if (x->t[k] != y->t[k] || memcmp(x->images[k], y->images[k], n)) return 0;
            if ((x->masks[k] == NULL) != (y->masks[k] == NULL)) return 0;
        }
    }
    return 1;
}

TEST(mixing_reproducible_and_resumable) {
    tuna_data_config c;
    base_config(&c, 1, 1, 1, 1);
    c.streams[TUNA_TASK_TEXT].batch_size = 3;
    tuna_data *d1 = NULL, *d2 = NULL, *d3 = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_data_open(&c, NULL, &d1, &err) == TUNA_OK, "%s", err.message);
    REQUIRE(tuna_data_open(&c, NULL, &d2, &err) == TUNA_OK, "%s", err.message);
    int counts[4] = {0};
    int same = 1;
    tuna_data_state at20 = {0};
    tuna_train_batch *keep[10] = {0};
    for (int k = 0; k < 200; k++) {
        tuna_train_batch *a = next(d1), *b = next(d2);
        REQUIRE(a && b, "batch %d", k);
        same &= same_batch(a, b);
        counts[a->task]++;
        if (a->task == TUNA_TASK_TEXT) CHECK(a->count == 3, "text batch size %d", a->count);
        if (k == 19) at20 = a->state_after;
        if (k >= 20 && k < 30) keep[k - 20] = a;
        else tuna_train_batch_free(a);
        tuna_train_batch_free(b);
    }
    CHECK(same, "same seed, different batches");
    printf("  mix over 200 micro-batches: t2i %d edit %d mmu %d text %d\n", counts[0], counts[1], counts[2], counts[3]);
    CHECK(counts[0] > 70 && counts[0] < 130 && counts[1] > 20 && counts[1] < 60 && counts[2] > 20 && counts[2] < 60 &&
              counts[3] > 5 && counts[3] < 40,
          "mix far from 0.5/0.2/0.2/0.1");
    /* resume from the state after batch 20 (through JSON): batches 21..30 again */
    char *json = NULL;
    tuna_data_state back;
    REQUIRE(tuna_data_state_to_json(&at20, &json, &err) == TUNA_OK, "to json");
    REQUIRE(tuna_data_state_from_json(json, &back, &err) == TUNA_OK, "%s", err.message);
    free(json);
    CHECK(memcmp(&back, &at20, sizeof back) == 0, "state round trip");
    REQUIRE(tuna_data_open(&c, &back, &d3, &err) == TUNA_OK, "%s", err.message);
    for (int k = 0; k < 10; k++) {
        tuna_train_batch *r = next(d3);
        REQUIRE(r, "resumed batch");
        CHECK(same_batch(r, keep[k]), "resumed batch %d differs", 21 + k);
        tuna_train_batch_free(r);
        tuna_train_batch_free(keep[k]);
    }
    /* another seed: another order */
    tuna_data_close(d1);
    tuna_data_close(d2);
    tuna_data_close(d3);
}

TEST(open_errors) {
    tuna_data_config c;
    base_config(&c, 0, 0, 0, 0);
    tuna_data *d = NULL;
    tuna_error err = {0};
    CHECK(tuna_data_open(&c, NULL, &d, &err) != TUNA_OK && d == NULL, "no stream accepted");
    base_config(&c, 1, 0, 0, 0);
    c.streams[0].jsonl_path = "/nonexistent/x.jsonl";
    CHECK(tuna_data_open(&c, NULL, &d, &err) != TUNA_OK, "missing file accepted");
    base_config(&c, 1, 0, 0, 0);
    c.buckets[0] = (tuna_bucket){30, 32};
    CHECK(tuna_data_open(&c, NULL, &d, &err) != TUNA_OK, "bad bucket accepted");
    /* a stream of only bad records: an error from next(), not a hang */
    write_text("bad.jsonl", "{\"image\": \"imgs/missing.png\", \"caption\": \"x\"}\n");
    char path[512];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    base_config(&c, 1, 0, 0, 0);
    c.streams[0].jsonl_path = path;
    REQUIRE(tuna_data_open(&c, NULL, &d, &err) == TUNA_OK, "%s", err.message);
    tuna_train_batch *b = NULL;
    CHECK(tuna_data_next(d, &b, &err) != TUNA_OK && b == NULL, "all-bad stream");
    tuna_data_close(d);
    /* too long: max_length below the t2i sequence */
    base_config(&c, 1, 0, 0, 0);
    c.streams[0].max_length = 5;
    REQUIRE(tuna_data_open(&c, NULL, &d, &err) == TUNA_OK, "%s", err.message);
    CHECK(tuna_data_next(d, &b, &err) != TUNA_OK, "over-long sequences not skipped");
    tuna_data_close(d);
}

int main(void) {
    char path[4096];
    tuna_error err = {0};
    const char *p = tuna_tokenizer_default_path(path, sizeof path);
    if (!p || tuna_tokenizer_load(p, &tok, &err) != TUNA_OK) {
        fprintf(stderr, "cannot load the tokenizer: %s\n", err.message);
        return 1;
    }
    make_fixtures();
    RUN(t2i_layout_noise_and_skips);
    RUN(understanding_reference_and_inference_layouts);
    RUN(edit_and_text_layouts);
    RUN(conversation_label_rule);
    RUN(mixing_reproducible_and_resumable);
    RUN(open_errors);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    tuna_tokenizer_free(tok);
    return test_summary();
}
