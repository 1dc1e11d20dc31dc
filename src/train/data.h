/* Training data (SPEC sections 3, 5 and 7): the reference's four JSONL
 * streams, mixed by weight, turned into ready-to-run sequences on a
 * background thread.
 *
 *   t2i            {"image", "caption"}
 *                  [BOS] caption [BOI][t][N][EOI][EOS]; labels all -100; flow on the image
 *   understanding  {"image", "conversations": [{"from": "human"|"gpt", "value"}...]}
 *                  reference training layout (format_sequence_und, default):
 *                    [BOS][BOI][t][N][EOI] chat(conversation) [EOS], CE on BOI, EOI, every
 *                    conversation token and EOS (the "<image>" text stays a token, as there);
 *                  inference layout (option): chat(conversation) with "<image>" replaced by the
 *                    segment, labels as format_conversation_und (assistant turns)
 *                  image clean (t = 1), or with probability 0.1 t = 1 - U(0, 0.1)
 *   edit           {"raw_image", "out_image", "instruction"}
 *                  [BOS][BOI][t=1][source N][EOI] instruction [BOI][t][target N][EOI][EOS];
 *                  labels all -100; flow on the target only
 *   text           {"conversations": [...]}: chat(conversation), labels as
 *                  format_conversation_und_text (the assistant blocks)
 *
 * "chat" is the Qwen2.5 template without generation prompt (src/text/chat.h); the
 * layouts are written once, for inference and training, in src/model/layout.h.
 * Segments have N+1 image_pad slots (t slot + N patches; the reference's
 * training datasets give N, a bug we do not copy). Labels follow Hugging Face:
 * aligned with input_ids, CE of position i predicts labels[i+1].
 *
 * Per image: a bucket by aspect ratio from the configured list, then the
 * training transform (TUNA_CROP_SHORT_SIDE) to [-1, 1] CHW; flow images get
 * t = sigmoid(n), n ~ N(-0.8, 0.8^2), noise e ~ N(0, noise_scale^2), fed
 * z = t*x + (1-t)*e; every image gets a random patch mask: ratio ~ U(-0.7, 0.3),
 * int(N*ratio) distinct patches when > 0.
 *
 * Reproducibility: each stream is shuffled per epoch by a permutation derived
 * from (seed, stream, epoch); every other random choice (stream mix, t, noise,
 * masks) comes from one tuna_rng in a fixed order. A micro-batch carries the
 * loader state right after it was made; resuming from that state yields the
 * exact same following batches. Bad records (missing field, unreadable image,
 * empty caption, too long) are skipped and counted, never fatal. */
#ifndef TUNA_TRAIN_DATA_H
#define TUNA_TRAIN_DATA_H

#include "core/rng.h"
#include "core/status.h"
#include "io/image.h"
#include "model/config.h"
#include "text/tokenizer.h"

#include <stdint.h>

typedef enum { TUNA_TASK_T2I = 0, TUNA_TASK_EDIT, TUNA_TASK_UNDERSTAND, TUNA_TASK_TEXT, TUNA_TASK_COUNT } tuna_task;

/* "t2i", "edit", "mmu", "text" (the reference's stream names). */
const char *tuna_task_name(tuna_task task);
int tuna_task_from_name(const char *name, tuna_task *out); /* 1 on success ("understanding" too) */

#define TUNA_SAMPLE_MAX_IMAGES 2

/* One training sequence: everything of the SPEC section 9 batch. */
typedef struct {
    tuna_task task;
    int32_t *input_ids;  /* [length] */
    int32_t *labels;     /* [length], -100 = ignored; HF alignment */
    int length;
    int image_count;     /* 0, 1 or 2, in order of appearance */
    int heights[TUNA_SAMPLE_MAX_IMAGES], widths[TUNA_SAMPLE_MAX_IMAGES];
    float *images[TUNA_SAMPLE_MAX_IMAGES];   /* [3, H, W] as fed: z_t for flow images, else clean */
    float *targets[TUNA_SAMPLE_MAX_IMAGES];  /* [3, H, W] clean x in [-1, 1] */
    float t[TUNA_SAMPLE_MAX_IMAGES];
    uint8_t *masks[TUNA_SAMPLE_MAX_IMAGES];  /* [N], 1 = mask_token; NULL when nothing is masked */
    int mask_counts[TUNA_SAMPLE_MAX_IMAGES];
    uint8_t flow[TUNA_SAMPLE_MAX_IMAGES];    /* 1 = in the flow loss */
    int64_t record;                          /* line index in the stream's JSONL (0-based, non-empty lines) */
} tuna_train_sample;

void tuna_train_sample_free(tuna_train_sample *s);

/* Loader position: saved in checkpoints. */
typedef struct {
    tuna_rng rng;
    int64_t epoch[TUNA_TASK_COUNT];
    int64_t position[TUNA_TASK_COUNT]; /* records consumed in the current epoch */
    int64_t skipped[TUNA_TASK_COUNT];  /* bad records skipped so far */
    int64_t batches;                   /* micro-batches made so far */
} tuna_data_state;

/* JSON object text (malloc'd) <-> state. */
tuna_status tuna_data_state_to_json(const tuna_data_state *s, char **json, tuna_error *err);
tuna_status tuna_data_state_from_json(const char *json, tuna_data_state *s, tuna_error *err);

typedef struct {
    tuna_task task;
    int count;
    tuna_train_sample *samples;
    tuna_data_state state_after; /* the loader state right after this batch */
} tuna_train_batch;

void tuna_train_batch_free(tuna_train_batch *b);

typedef struct {
    const char *jsonl_path;  /* NULL: stream absent */
    const char *image_root;  /* NULL: the JSONL's directory */
    double weight;           /* relative; <= 0 disables the stream */
    int batch_size;          /* sequences per micro-batch (default 1, at most TUNA_BATCH_MAX) */
    int max_length;          /* longest sequence kept, in tokens (default 2048) */
} tuna_stream_config;

#define TUNA_DATA_MAX_BUCKETS 16
#define TUNA_BATCH_MAX 256

typedef struct {
    tuna_stream_config streams[TUNA_TASK_COUNT];
    tuna_bucket buckets[TUNA_DATA_MAX_BUCKETS];
    int bucket_count;            /* 0: the five 512-class buckets of SPEC section 4 */
    int patch_size;              /* 16 */
    tuna_special_tokens tokens;  /* from the model configuration */
    const tuna_tokenizer *tokenizer; /* borrowed; must outlive the loader */
    float noise_scale;           /* 2.0 */
    float t_mean, t_std;         /* -0.8, 0.8 */
    float mask_ratio_min, mask_ratio_max; /* -0.7, 0.3 (masked_image_ratio_min / masked_image_ratio) */
    float und_noise_prob, und_noise_level; /* 0.1, 0.1 (mmu_noise_prob / mmu_noise_level) */
    int und_inference_layout;    /* 0: reference training layout (default) */
    uint64_t seed;
    int queue_depth;             /* micro-batches made ahead (default 4) */
    int quiet;                   /* no warnings on stderr for skipped records */
} tuna_data_config;

/* The defaults above (weights t2i 0.5, edit 0.2, understanding 0.2, text 0.1; no paths). */
void tuna_data_config_default(tuna_data_config *c);

typedef struct tuna_data tuna_data;

/* Index the JSONL files and start the loader thread. resume: NULL for a fresh
 * start (the rng seeded from config->seed), else the state to continue from. */
tuna_status tuna_data_open(const tuna_data_config *config, const tuna_data_state *resume, tuna_data **out,
                           tuna_error *err);
/* The next micro-batch (blocks until the loader has it). *out is the caller's: tuna_train_batch_free. */
tuna_status tuna_data_next(tuna_data *d, tuna_train_batch **out, tuna_error *err);
/* Records per stream (after indexing), for reporting. */
int64_t tuna_data_stream_size(const tuna_data *d, tuna_task task);
void tuna_data_close(tuna_data *d);

/* Label rule of the reference's format_conversation_und(_text), on chat ids:
 * with s_0 < s_1 < ... the positions of eos (<|im_end|>): everything up to s_0
 * is ignored, blocks (s_{i-1}, s_i] with odd i (user turns) are ignored, and
 * after the last separator the tail is ignored when that separator is not
 * second to last and closed an odd block. Other labels = the ids. Returns 0
 * when ids hold no eos (the reference would fail). */
int tuna_conversation_labels(const int32_t *ids, int n, int32_t eos, int32_t *labels);

#endif
