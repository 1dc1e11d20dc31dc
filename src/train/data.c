/* Training data loader: see data.h for the layouts and the random draws. */
#include "train/data.h"

#include "core/mapped_file.h"
#include "model/layout.h"
#include "text/chat.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const task_names[TUNA_TASK_COUNT] = {"t2i", "edit", "mmu", "text"};

const char *tuna_task_name(tuna_task task) {
    return (unsigned)task < TUNA_TASK_COUNT ? task_names[task] : "?";
}

int tuna_task_from_name(const char *name, tuna_task *out) {
    for (int i = 0; i < TUNA_TASK_COUNT; i++)
        if (strcmp(name, task_names[i]) == 0) return *out = (tuna_task)i, 1;
    if (strcmp(name, "understanding") == 0 || strcmp(name, "und") == 0) return *out = TUNA_TASK_UNDERSTAND, 1;
    if (strcmp(name, "text_only") == 0) return *out = TUNA_TASK_TEXT, 1;
    return 0;
}

void tuna_train_sample_free(tuna_train_sample *s) {
    free(s->input_ids);
    free(s->labels);
    for (int k = 0; k < TUNA_SAMPLE_MAX_IMAGES; k++) {
        free(s->images[k]);
        free(s->targets[k]);
        free(s->masks[k]);
    }
    memset(s, 0, sizeof *s);
}

void tuna_train_batch_free(tuna_train_batch *b) {
    if (!b) return;
    for (int i = 0; i < b->count; i++) tuna_train_sample_free(&b->samples[i]);
    free(b->samples);
    free(b);
}

void tuna_data_config_default(tuna_data_config *c) {
    memset(c, 0, sizeof *c);
    const double weights[TUNA_TASK_COUNT] = {0.5, 0.2, 0.2, 0.1};
    for (int i = 0; i < TUNA_TASK_COUNT; i++) {
        c->streams[i].weight = weights[i];
        c->streams[i].batch_size = 1;
        c->streams[i].max_length = 2048;
    }
    c->patch_size = 16;
    c->tokens = (tuna_special_tokens){151644, 151645, 151652, 151653, 151655, 151665};
    c->noise_scale = 2.0f;
    c->t_mean = -0.8f;
    c->t_std = 0.8f;
    c->mask_ratio_min = -0.7f;
    c->mask_ratio_max = 0.3f;
    c->und_noise_prob = 0.1f;
    c->und_noise_level = 0.1f;
    c->seed = 0;
    c->queue_depth = 4;
}

/* ---- state <-> JSON --------------------------------------------------------- */

tuna_status tuna_data_state_to_json(const tuna_data_state *s, char **json, tuna_error *err) {
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "{\"rng\": [\"%016" PRIx64 "\", \"%016" PRIx64 "\", \"%016" PRIx64
                                      "\", \"%016" PRIx64 "\"], \"batches\": %" PRId64 ", \"streams\": {",
                     s->rng.state[0], s->rng.state[1], s->rng.state[2], s->rng.state[3], s->batches);
    for (int i = 0; i < TUNA_TASK_COUNT; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "%s\"%s\": {\"epoch\": %" PRId64 ", \"position\": %" PRId64 ", \"skipped\": %" PRId64 "}",
                      i ? ", " : "", task_names[i], s->epoch[i], s->position[i], s->skipped[i]);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "}}");
    *json = strdup(buf);
    if (!*json) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    return TUNA_OK;
}

static int json_int64(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble)) return 0;
    *out = (int64_t)v->valuedouble;
    return 1;
}

tuna_status tuna_data_state_from_json(const char *json, tuna_data_state *s, tuna_error *err) {
    memset(s, 0, sizeof *s);
    cJSON *root = cJSON_Parse(json);
    if (!root) return tuna_fail(err, TUNA_ERR_FORMAT, "data state: not JSON");
    tuna_status st = TUNA_ERR_FORMAT;
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(root, "rng");
    const cJSON *streams = cJSON_GetObjectItemCaseSensitive(root, "streams");
    if (!cJSON_IsArray(rng) || cJSON_GetArraySize(rng) != 4 || !cJSON_IsObject(streams) ||
        !json_int64(root, "batches", &s->batches))
        goto done;
    for (int i = 0; i < 4; i++) {
        const cJSON *w = cJSON_GetArrayItem(rng, i);
        char *end = NULL;
        if (!cJSON_IsString(w)) goto done;
        s->rng.state[i] = strtoull(w->valuestring, &end, 16);
        if (!end || *end || strlen(w->valuestring) != 16) goto done;
    }
    for (int i = 0; i < TUNA_TASK_COUNT; i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(streams, task_names[i]);
        if (!cJSON_IsObject(o) || !json_int64(o, "epoch", &s->epoch[i]) ||
            !json_int64(o, "position", &s->position[i]) || !json_int64(o, "skipped", &s->skipped[i]))
            goto done;
    }
    st = TUNA_OK;
done:
    cJSON_Delete(root);
    if (st != TUNA_OK) return tuna_fail(err, st, "data state: missing or malformed field");
    return TUNA_OK;
}

/* ---- conversation labels (format_conversation_und[_text]) --------------------- */

int tuna_conversation_labels(const int32_t *ids, int n, int32_t eos, int32_t *labels) {
    int first = -1;
    for (int j = 0; j < n; j++)
        if (ids[j] == eos) { first = j; break; }
    if (first < 0) return 0;
    for (int j = 0; j < n; j++) labels[j] = j <= first ? TUNA_IGNORE_LABEL : ids[j];
    int prev = first, index = 1, last = first;
    for (int j = first + 1; j < n; j++) {
        if (ids[j] != eos) continue;
        if (index % 2 == 1) /* a user turn: (prev, j] */
            for (int q = prev + 1; q <= j; q++) labels[q] = TUNA_IGNORE_LABEL;
        prev = last = j;
        index++;
    }
    /* The reference's loop variable ends at the last separator's index (1 when
     * there is only one); an odd one that is not second to last masks the tail. */
    int final_index = index > 1 ? index - 1 : 1;
    if (last != n - 2 && final_index % 2 == 1)
        for (int q = last + 1; q < n; q++) labels[q] = TUNA_IGNORE_LABEL;
    return 1;
}

/* ---- the loader ------------------------------------------------------------- */

typedef struct {
    char *text;         /* the whole JSONL file */
    size_t *line_start; /* non-empty lines */
    size_t *line_len;
    int64_t count;
    int64_t *perm;      /* permutation of the current epoch */
    int64_t perm_epoch; /* which epoch perm belongs to (-1: none) */
    char *root;         /* image root */
} stream_index;

struct tuna_data {
    tuna_data_config config;
    stream_index streams[TUNA_TASK_COUNT];
    tuna_data_state state;  /* producer-side state */

    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    tuna_train_batch **queue;
    int queue_head, queue_count;
    int stop;
    int failed;             /* the producer hit a fatal error */
    tuna_error error;
};

static tuna_status index_stream(stream_index *s, const tuna_stream_config *sc, tuna_error *err) {
    size_t size = 0;
    TUNA_TRY(tuna_read_file(sc->jsonl_path, (size_t)1 << 36, &s->text, &size, err));
    size_t cap = 0;
    for (size_t i = 0; i < size;) {
        size_t j = i;
        while (j < size && s->text[j] != '\n') j++;
        size_t a = i, b = j;
        while (a < b && (s->text[a] == ' ' || s->text[a] == '\t' || s->text[a] == '\r')) a++;
        while (b > a && (s->text[b - 1] == ' ' || s->text[b - 1] == '\t' || s->text[b - 1] == '\r')) b--;
        if (b > a) {
            if ((size_t)s->count == cap) {
                cap = cap ? 2 * cap : 1024;
                size_t *ns = realloc(s->line_start, cap * sizeof *ns);
                if (!ns) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory indexing %s", sc->jsonl_path);
                s->line_start = ns;
                size_t *nl = realloc(s->line_len, cap * sizeof *nl);
                if (!nl) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory indexing %s", sc->jsonl_path);
                s->line_len = nl;
            }
            s->line_start[s->count] = a;
            s->line_len[s->count] = b - a;
            s->count++;
        }
        i = j + 1;
    }
    if (s->count == 0) return tuna_fail(err, TUNA_ERR_FORMAT, "%s holds no records", sc->jsonl_path);
    s->perm = malloc((size_t)s->count * sizeof *s->perm);
    if (!s->perm) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory indexing %s", sc->jsonl_path);
    s->perm_epoch = -1;
    if (sc->image_root) {
        s->root = strdup(sc->image_root);
    } else { /* the JSONL's directory */
        const char *slash = strrchr(sc->jsonl_path, '/');
        s->root = slash ? strndup(sc->jsonl_path, (size_t)(slash - sc->jsonl_path)) : strdup(".");
    }
    if (!s->root) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    return TUNA_OK;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The epoch's order: Fisher-Yates with an rng seeded from (seed, stream, epoch). */
static void ensure_permutation(stream_index *s, uint64_t seed, int task, int64_t epoch) {
    if (s->perm_epoch == epoch) return;
    tuna_rng rng;
    tuna_rng_seed(&rng, mix64(seed ^ mix64(0x7475u + (uint64_t)task * 0x9e3779b97f4a7c15ull + (uint64_t)epoch)));
    for (int64_t i = 0; i < s->count; i++) s->perm[i] = i;
    for (int64_t i = s->count - 1; i > 0; i--) {
        int64_t j = (int64_t)tuna_rng_below(&rng, (uint64_t)i + 1);
        int64_t tmp = s->perm[i];
        s->perm[i] = s->perm[j];
        s->perm[j] = tmp;
    }
    s->perm_epoch = epoch;
}

static int64_t next_record(tuna_data *d, int task) {
    stream_index *s = &d->streams[task];
    if (d->state.position[task] >= s->count) {
        d->state.epoch[task]++;
        d->state.position[task] = 0;
    }
    ensure_permutation(s, d->config.seed, task, d->state.epoch[task]);
    return s->perm[d->state.position[task]++];
}

/* ---- building one sample ------------------------------------------------------ */

/* A sequence under construction: ids and labels in step (model/layout.h). */
typedef struct {
    tuna_ids ids, labels;
    tuna_layout layout;
} seq_builder;

static void seq_begin(seq_builder *b, const tuna_special_tokens *tokens) {
    memset(b, 0, sizeof *b);
    b->layout = (tuna_layout){tokens, &b->ids, &b->labels};
}

static void seq_free(seq_builder *b) {
    tuna_ids_free(&b->ids);
    tuna_ids_free(&b->labels);
}

/* A skip: a message for the warning, and the sample left empty. */
typedef struct {
    char reason[8192];
} skip_note;

static int skip(skip_note *note, const char *fmt, const char *a, const char *b) {
    snprintf(note->reason, sizeof note->reason, fmt, a ? a : "", b ? b : "");
    return 0;
}

static const char *json_string(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Decode, bucket, resize + crop (training transform), to [-1, 1] CHW. When
 * forced_h > 0 the bucket is given (edit targets follow their source). */
static int load_image(tuna_data *d, const stream_index *s, const char *rel, int forced_h, int forced_w, float **chw,
                      int *h, int *w, skip_note *note) {
    char path[4096];
    if (rel[0] == '/') snprintf(path, sizeof path, "%s", rel);
    else snprintf(path, sizeof path, "%s/%s", s->root, rel);
    tuna_image img = {0}, out = {0};
    tuna_error e = {0};
    if (tuna_image_decode_file(path, NULL, &img, &e) != TUNA_OK) return skip(note, "image %s: %s", path, e.message);
    int bh = forced_h, bw = forced_w;
    if (bh <= 0) {
        const tuna_bucket *buckets = d->config.bucket_count ? d->config.buckets : tuna_buckets_512;
        int n = d->config.bucket_count ? d->config.bucket_count : 5;
        if (tuna_image_pick_bucket(img.width, img.height, buckets, n, &bh, &bw) < 0) {
            tuna_image_free(&img);
            return skip(note, "image %s: no bucket%s", path, NULL);
        }
    }
    tuna_status st = tuna_image_resize_crop_mode(&img, bh, bw, TUNA_CROP_SHORT_SIDE, &out, &e);
    tuna_image_free(&img);
    if (st != TUNA_OK) return skip(note, "image %s: %s", path, e.message);
    *chw = malloc((size_t)3 * bh * bw * sizeof(float));
    if (!*chw) {
        tuna_image_free(&out);
        return skip(note, "image %s: out of memory%s", path, NULL);
    }
    tuna_image_to_tensor(&out, *chw);
    tuna_image_free(&out);
    *h = bh;
    *w = bw;
    return 1;
}

/* Noise, t and mask of image k (SPEC section 5). t_mode: 0 flow (logit-normal),
 * 1 clean (t = 1), 2 understanding (clean, or 1 - U(0, level) with probability p).
 * Draw order: t, then noise (only when t < 1), then the mask. */
static int prepare_image(tuna_data *d, tuna_train_sample *s, int k, int t_mode) {
    tuna_rng *rng = &d->state.rng;
    const tuna_data_config *c = &d->config;
    float t = 1.0f;
    if (t_mode == 0) {
        float n = c->t_mean + c->t_std * tuna_rng_normal(rng);
        t = 1.0f / (1.0f + expf(-n));
    } else if (t_mode == 2) {
        if (tuna_rng_uniform(rng) < c->und_noise_prob) t = 1.0f - c->und_noise_level * tuna_rng_uniform(rng);
    }
    s->t[k] = t;
    long n = 3L * s->heights[k] * s->widths[k];
    s->images[k] = malloc((size_t)n * sizeof(float));
    if (!s->images[k]) return 0;
    if (t < 1.0f) {
        for (long i = 0; i < n; i++) {
            float e = c->noise_scale * tuna_rng_normal(rng);
            s->images[k][i] = t * s->targets[k][i] + (1.0f - t) * e;
        }
    } else {
        memcpy(s->images[k], s->targets[k], (size_t)n * sizeof(float));
    }
    int patches = (s->heights[k] / c->patch_size) * (s->widths[k] / c->patch_size);
    float ratio = c->mask_ratio_min + (c->mask_ratio_max - c->mask_ratio_min) * tuna_rng_uniform(rng);
    int count = (int)((float)patches * ratio); /* int() truncates toward zero */
    if (count > 0) {
        if (count > patches) count = patches;
        s->masks[k] = calloc((size_t)patches, 1);
        int *order = malloc((size_t)patches * sizeof *order);
        if (!s->masks[k] || !order) {
            free(order);
            return 0;
        }
        for (int i = 0; i < patches; i++) order[i] = i;
        for (int i = 0; i < count; i++) { /* partial Fisher-Yates: `count` distinct patches */
            int j = i + (int)tuna_rng_below(rng, (uint64_t)(patches - i));
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
            s->masks[k][order[i]] = 1;
        }
        free(order);
        s->mask_counts[k] = count;
    }
    return 1;
}

static int encode_text(const tuna_data *d, const char *text, tuna_ids *ids, skip_note *note) {
    tuna_error e = {0};
    if (tuna_tokenizer_encode(d->config.tokenizer, text, strlen(text), ids, &e) != TUNA_OK)
        return skip(note, "tokenizer: %s%s", e.message, NULL);
    return 1;
}

/* conversations -> chat ids (Qwen2.5 template, no generation prompt). */
static int encode_conversation(const tuna_data *d, const cJSON *record, tuna_chat_tokens *out, skip_note *note) {
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(record, "conversations");
    int n = cJSON_IsArray(conv) ? cJSON_GetArraySize(conv) : 0;
    if (n <= 0) return skip(note, "no \"conversations\"%s%s", NULL, NULL);
    tuna_chat_message *msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs) return skip(note, "out of memory%s%s", NULL, NULL);
    int i = 0;
    const cJSON *turn;
    cJSON_ArrayForEach(turn, conv) {
        const char *role = json_string(turn, "from");
        if (!role) role = json_string(turn, "role");
        const char *value = json_string(turn, "value");
        if (!value) value = json_string(turn, "content");
        if (!role || !value) {
            free(msgs);
            return skip(note, "conversation turn without \"from\"/\"value\"%s%s", NULL, NULL);
        }
        if (!strcmp(role, "human") || !strcmp(role, "user")) msgs[i].role = TUNA_ROLE_USER;
        else if (!strcmp(role, "gpt") || !strcmp(role, "assistant")) msgs[i].role = TUNA_ROLE_ASSISTANT;
        else if (!strcmp(role, "system")) msgs[i].role = TUNA_ROLE_SYSTEM;
        else {
            free(msgs);
            return skip(note, "unknown role \"%s\"%s", role, NULL);
        }
        msgs[i].content = value;
        i++;
    }
    tuna_error e = {0};
    tuna_status st = tuna_chat_encode(d->config.tokenizer, msgs, (size_t)n, NULL, out, &e);
    free(msgs);
    if (st != TUNA_OK) return skip(note, "chat template: %s%s", e.message, NULL);
    return 1;
}

static int take_sequence(tuna_train_sample *s, seq_builder *b) {
    s->input_ids = b->ids.data;
    s->labels = b->labels.data;
    s->length = (int)b->ids.len;
    memset(&b->ids, 0, sizeof b->ids);
    memset(&b->labels, 0, sizeof b->labels);
    return 1;
}

/* The sequence built (1), or its memory freed and the record skipped. */
static int finish_sequence(tuna_train_sample *s, seq_builder *b, int ok, skip_note *note) {
    if (ok) return take_sequence(s, b);
    seq_free(b);
    return skip(note, "out of memory%s%s", NULL, NULL);
}

static int build_t2i(tuna_data *d, const stream_index *st, const cJSON *r, tuna_train_sample *s, skip_note *note) {
    const char *image = json_string(r, "image"), *caption = json_string(r, "caption");
    if (!image || !*image) return skip(note, "no \"image\"%s%s", NULL, NULL);
    if (!caption || !*caption) return skip(note, "empty or missing \"caption\"%s%s", NULL, NULL);
    if (!load_image(d, st, image, 0, 0, &s->targets[0], &s->heights[0], &s->widths[0], note)) return 0;
    s->image_count = 1;
    s->flow[0] = 1;
    tuna_ids cap = {0};
    if (!encode_text(d, caption, &cap, note)) return 0;
    int p = d->config.patch_size, patches = (s->heights[0] / p) * (s->widths[0] / p);
    seq_builder b;
    seq_begin(&b, &d->config.tokens);
    int ok = tuna_layout_t2i(&b.layout, cap.data, cap.len, 0, patches, NULL) == TUNA_OK;
    tuna_ids_free(&cap);
    return finish_sequence(s, &b, ok, note);
}

static int build_edit(tuna_data *d, const stream_index *st, const cJSON *r, tuna_train_sample *s, skip_note *note) {
    const char *raw = json_string(r, "raw_image"), *outp = json_string(r, "out_image");
    const char *instruction = json_string(r, "instruction");
    if (!raw || !*raw || !outp || !*outp) return skip(note, "no \"raw_image\"/\"out_image\"%s%s", NULL, NULL);
    if (!instruction) return skip(note, "no \"instruction\"%s%s", NULL, NULL);
    /* Both images share the source's bucket (the reference uses one size for both). */
    if (!load_image(d, st, raw, 0, 0, &s->targets[0], &s->heights[0], &s->widths[0], note)) return 0;
    if (!load_image(d, st, outp, s->heights[0], s->widths[0], &s->targets[1], &s->heights[1], &s->widths[1], note))
        return 0;
    s->image_count = 2;
    s->flow[0] = 0;
    s->flow[1] = 1;
    tuna_ids text = {0};
    if (!encode_text(d, instruction, &text, note)) return 0;
    int p = d->config.patch_size, patches = (s->heights[0] / p) * (s->widths[0] / p);
    seq_builder b;
    seq_begin(&b, &d->config.tokens);
    int ok = tuna_layout_edit(&b.layout, patches, text.data, text.len, patches, NULL) == TUNA_OK;
    tuna_ids_free(&text);
    return finish_sequence(s, &b, ok, note);
}

static int build_understanding(tuna_data *d, const stream_index *st, const cJSON *r, tuna_train_sample *s,
                               skip_note *note) {
    const char *image = json_string(r, "image");
    if (!image || !*image) return skip(note, "no \"image\"%s%s", NULL, NULL);
    tuna_chat_tokens chat = {0};
    if (!encode_conversation(d, r, &chat, note)) return 0;
    if (d->config.und_inference_layout && chat.n_images != 1) {
        tuna_chat_tokens_free(&chat);
        return skip(note, "the inference layout needs exactly one <image> in the conversation%s%s", NULL, NULL);
    }
    if (!load_image(d, st, image, 0, 0, &s->targets[0], &s->heights[0], &s->widths[0], note)) {
        tuna_chat_tokens_free(&chat);
        return 0;
    }
    s->image_count = 1;
    s->flow[0] = 0;
    const tuna_special_tokens *tk = &d->config.tokens;
    int p = d->config.patch_size, patches = (s->heights[0] / p) * (s->widths[0] / p);
    seq_builder b;
    seq_begin(&b, tk);
    int ok;
    if (!d->config.und_inference_layout) {
        /* format_sequence_und: labels = BOS, BOI, -100 on the slots, EOI, every
         * conversation token, EOS. */
        ok = tuna_layout_understanding(&b.layout, patches, chat.ids.data, chat.ids.len, NULL) == TUNA_OK;
    } else {
        /* format_conversation_und: the segment replaces <image>, labels by turns. */
        ok = tuna_layout_chat(&b.layout, chat.ids.data, chat.ids.len, chat.image_pos, 1, &patches, NULL) == TUNA_OK;
        if (ok && !tuna_conversation_labels(b.ids.data, (int)b.ids.len, tk->eos, b.labels.data)) {
            tuna_chat_tokens_free(&chat);
            seq_free(&b);
            return skip(note, "conversation without <|im_end|>%s%s", NULL, NULL);
        }
        /* the image slots are never CE targets */
        for (size_t i = 0; ok && i < b.ids.len; i++)
            if (b.ids.data[i] == tk->image_pad) b.labels.data[i] = TUNA_IGNORE_LABEL;
    }
    tuna_chat_tokens_free(&chat);
    return finish_sequence(s, &b, ok, note);
}

static int build_text(tuna_data *d, const cJSON *r, tuna_train_sample *s, skip_note *note) {
    tuna_chat_tokens chat = {0};
    if (!encode_conversation(d, r, &chat, note)) return 0;
    seq_builder b;
    seq_begin(&b, &d->config.tokens);
    int ok = tuna_layout_push_text(&b.layout, chat.ids.data, chat.ids.len, 0, NULL) == TUNA_OK;
    tuna_chat_tokens_free(&chat);
    if (!ok || !tuna_conversation_labels(b.ids.data, (int)b.ids.len, d->config.tokens.eos, b.labels.data)) {
        seq_free(&b);
        return skip(note, ok ? "conversation without <|im_end|>%s%s" : "out of memory%s%s", NULL, NULL);
    }
    take_sequence(s, &b);
    return 1;
}

/* One record -> one sample; 0 (with note) when the record is bad. Random draws
 * happen only after the record is known good, so a bad record consumes none. */
static int build_sample(tuna_data *d, int task, int64_t record, tuna_train_sample *s, skip_note *note) {
    const stream_index *st = &d->streams[task];
    memset(s, 0, sizeof *s);
    s->task = (tuna_task)task;
    s->record = record;
    cJSON *r = cJSON_ParseWithLength(st->text + st->line_start[record], st->line_len[record]);
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return skip(note, "not a JSON object%s%s", NULL, NULL);
    }
    int ok;
    switch (task) {
    case TUNA_TASK_T2I: ok = build_t2i(d, st, r, s, note); break;
    case TUNA_TASK_EDIT: ok = build_edit(d, st, r, s, note); break;
    case TUNA_TASK_UNDERSTAND: ok = build_understanding(d, st, r, s, note); break;
    default: ok = build_text(d, r, s, note); break;
    }
    cJSON_Delete(r);
    int max_length = d->config.streams[task].max_length;
    if (ok && max_length > 0 && s->length > max_length) {
        char m[64];
        snprintf(m, sizeof m, "%d > %d", s->length, max_length);
        ok = skip(note, "sequence too long (%s tokens)%s", m, NULL);
    }
    if (ok) {
        for (int k = 0; ok && k < s->image_count; k++) {
            int mode = s->flow[k] ? 0 : (task == TUNA_TASK_UNDERSTAND ? 2 : 1);
            if (!prepare_image(d, s, k, mode)) ok = skip(note, "out of memory%s%s", NULL, NULL);
        }
    }
    if (!ok) tuna_train_sample_free(s);
    return ok;
}

static int pick_stream(tuna_data *d) {
    double total = 0;
    for (int i = 0; i < TUNA_TASK_COUNT; i++)
        if (d->streams[i].count > 0) total += d->config.streams[i].weight;
    double u = (double)tuna_rng_uniform(&d->state.rng) * total, acc = 0;
    int last = -1;
    for (int i = 0; i < TUNA_TASK_COUNT; i++) {
        if (d->streams[i].count == 0) continue;
        acc += d->config.streams[i].weight;
        last = i;
        if (u < acc) return i;
    }
    return last;
}

/* One micro-batch from the producer's state. */
static tuna_status make_batch(tuna_data *d, tuna_train_batch **out, tuna_error *err) {
    int task = pick_stream(d);
    int count = d->config.streams[task].batch_size > 0 ? d->config.streams[task].batch_size : 1;
    tuna_train_batch *b = calloc(1, sizeof *b);
    if (b) b->samples = calloc((size_t)count, sizeof *b->samples);
    if (!b || !b->samples) {
        free(b);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory for a batch");
    }
    b->task = (tuna_task)task;
    for (int i = 0; i < count; i++) {
        int64_t bad_run = 0;
        for (;;) {
            int64_t record = next_record(d, task);
            skip_note note = {{0}};
            if (build_sample(d, task, record, &b->samples[i], &note)) break;
            d->state.skipped[task]++;
            if (!d->config.quiet)
                fprintf(stderr, "warning: %s record %" PRId64 " of %s skipped (%" PRId64 " so far): %s\n",
                        tuna_task_name(task), record + 1, d->config.streams[task].jsonl_path, d->state.skipped[task],
                        note.reason);
            if (++bad_run > 2 * d->streams[task].count) { /* runs can span an epoch boundary */
                tuna_train_batch_free(b);
                return tuna_fail(err, TUNA_ERR_FORMAT, "stream %s (%s): no usable record", tuna_task_name(task),
                                 d->config.streams[task].jsonl_path);
            }
        }
        b->count = i + 1;
    }
    d->state.batches++;
    b->state_after = d->state;
    *out = b;
    return TUNA_OK;
}

static void *producer_main(void *arg) {
    tuna_data *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        while (!d->stop && d->queue_count == d->config.queue_depth) pthread_cond_wait(&d->changed, &d->lock);
        int stop = d->stop;
        pthread_mutex_unlock(&d->lock);
        if (stop) break;
        tuna_train_batch *b = NULL;
        tuna_error e = {0};
        tuna_status st = make_batch(d, &b, &e);
        pthread_mutex_lock(&d->lock);
        if (st != TUNA_OK) {
            d->failed = 1;
            d->error = e;
            pthread_cond_broadcast(&d->changed);
            pthread_mutex_unlock(&d->lock);
            break;
        }
        d->queue[(d->queue_head + d->queue_count) % d->config.queue_depth] = b;
        d->queue_count++;
        pthread_cond_broadcast(&d->changed);
        pthread_mutex_unlock(&d->lock);
    }
    return NULL;
}

tuna_status tuna_data_open(const tuna_data_config *config, const tuna_data_state *resume, tuna_data **out,
                           tuna_error *err) {
    *out = NULL;
    if (!config->tokenizer) return tuna_fail(err, TUNA_ERR_INVALID, "data: no tokenizer");
    if (config->patch_size <= 0) return tuna_fail(err, TUNA_ERR_INVALID, "data: bad patch size");
    if (config->bucket_count < 0 || config->bucket_count > TUNA_DATA_MAX_BUCKETS)
        return tuna_fail(err, TUNA_ERR_INVALID, "data: at most %d buckets", TUNA_DATA_MAX_BUCKETS);
    for (int i = 0; i < config->bucket_count; i++)
        if (config->buckets[i].height <= 0 || config->buckets[i].width <= 0 ||
            config->buckets[i].height % config->patch_size || config->buckets[i].width % config->patch_size)
            return tuna_fail(err, TUNA_ERR_INVALID, "bucket %dx%d is not a multiple of the patch size %d",
                             config->buckets[i].height, config->buckets[i].width, config->patch_size);
    for (int i = 0; i < TUNA_TASK_COUNT; i++)
        if (config->streams[i].batch_size > TUNA_BATCH_MAX)
            return tuna_fail(err, TUNA_ERR_INVALID, "data: batch size %d of stream %s is over %d",
                             config->streams[i].batch_size, task_names[i], TUNA_BATCH_MAX);
    tuna_data *d = calloc(1, sizeof *d);
    if (!d) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    d->config = *config;
    if (d->config.queue_depth <= 0) d->config.queue_depth = 4;
    int any = 0;
    tuna_status st = TUNA_OK;
    for (int i = 0; i < TUNA_TASK_COUNT && st == TUNA_OK; i++) {
        const tuna_stream_config *sc = &config->streams[i];
        if (!sc->jsonl_path || sc->weight <= 0) continue;
        st = index_stream(&d->streams[i], sc, err);
        if (st != TUNA_OK) tuna_fail_context(err, st, "stream %s", task_names[i]);
        any = 1;
    }
    if (st == TUNA_OK && !any) st = tuna_fail(err, TUNA_ERR_INVALID, "data: no stream has a JSONL file and a weight > 0");
    if (st != TUNA_OK) {
        tuna_data_close(d);
        return st;
    }
    if (resume) d->state = *resume;
    else tuna_rng_seed(&d->state.rng, config->seed);
    d->queue = calloc((size_t)d->config.queue_depth, sizeof *d->queue);
    if (!d->queue) {
        tuna_data_close(d);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->changed, NULL);
    if (pthread_create(&d->thread, NULL, producer_main, d) != 0) {
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->changed);
        free(d->queue);
        d->queue = NULL;
        tuna_data_close(d);
        return tuna_fail(err, TUNA_ERR_INTERNAL, "data: cannot start the loader thread");
    }
    d->thread_started = 1;
    *out = d;
    return TUNA_OK;
}

tuna_status tuna_data_next(tuna_data *d, tuna_train_batch **out, tuna_error *err) {
    *out = NULL;
    pthread_mutex_lock(&d->lock);
    while (d->queue_count == 0 && !d->failed) pthread_cond_wait(&d->changed, &d->lock);
    if (d->queue_count == 0) {
        tuna_error e = d->error;
        pthread_mutex_unlock(&d->lock);
        return tuna_fail(err, e.code ? e.code : TUNA_ERR_INTERNAL, "%s", e.message);
    }
    *out = d->queue[d->queue_head];
    d->queue_head = (d->queue_head + 1) % d->config.queue_depth;
    d->queue_count--;
    pthread_cond_broadcast(&d->changed);
    pthread_mutex_unlock(&d->lock);
    return TUNA_OK;
}

int64_t tuna_data_stream_size(const tuna_data *d, tuna_task task) {
    return (unsigned)task < TUNA_TASK_COUNT ? d->streams[task].count : 0;
}

void tuna_data_close(tuna_data *d) {
    if (!d) return;
    if (d->thread_started) {
        pthread_mutex_lock(&d->lock);
        d->stop = 1;
        pthread_cond_broadcast(&d->changed);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
        for (int i = 0; i < d->queue_count; i++)
            tuna_train_batch_free(d->queue[(d->queue_head + i) % d->config.queue_depth]);
        pthread_mutex_destroy(&d->lock);
        pthread_cond_destroy(&d->changed);
    }
    free(d->queue);
    for (int i = 0; i < TUNA_TASK_COUNT; i++) {
        free(d->streams[i].text);
        free(d->streams[i].line_start);
        free(d->streams[i].line_len);
        free(d->streams[i].perm);
        free(d->streams[i].root);
    }
    free(d);
}
