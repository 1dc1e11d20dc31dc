/* The sequence layouts of SPEC section 3, written once for inference
 * (infer/prompts.c, infer/understand.c) and training (train/data.c).
 *
 *   image segment   [BOI] image_pad x (N+1) [EOI]     (the t slot, then N patches)
 *   text-to-image   [BOS] caption [PAD] x pad_rows [BOI][t][N][EOI][EOS]
 *   editing         [BOS][BOI][t][source N][EOI] instruction [BOI][t][target N][EOI][EOS]
 *   understanding   training layout (format_sequence_und): [BOS][BOI][t][N][EOI] chat [EOS];
 *                   inference layout: chat with each <image> placeholder replaced by a segment
 *
 * "chat" is the Qwen2.5 template (text/chat.h). Segments have N+1 slots (the
 * reference's training datasets give N, a bug we do not copy).
 *
 * A layout appends ids and, when the caller asks for them, labels in step
 * (Hugging Face alignment: the CE of position i predicts labels[i+1];
 * TUNA_IGNORE_LABEL marks positions out of the loss). Inference builds ids only. */
#ifndef TUNA_MODEL_LAYOUT_H
#define TUNA_MODEL_LAYOUT_H

#include "core/status.h"
#include "model/config.h"
#include "text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

#define TUNA_IGNORE_LABEL (-100)

typedef struct {
    const tuna_special_tokens *tokens;
    tuna_ids *ids;    /* appended to */
    tuna_ids *labels; /* appended in step with ids; NULL: no labels (inference) */
} tuna_layout;

/* Patches N of a height x width image; fails unless both are positive multiples of patch. */
tuna_status tuna_layout_patches(int height, int width, int patch, int *patches, tuna_error *err);

tuna_status tuna_layout_push(const tuna_layout *l, int32_t id, int32_t label, tuna_error *err);
/* Text tokens; labelled: each its own label, else TUNA_IGNORE_LABEL. */
tuna_status tuna_layout_push_text(const tuna_layout *l, const int32_t *ids, size_t n, int labelled, tuna_error *err);
/* [BOI] image_pad x (patches+1) [EOI]; labels boi_label, ignored on the slots, eoi_label. */
tuna_status tuna_layout_image_segment(const tuna_layout *l, int patches, int32_t boi_label, int32_t eoi_label,
                                      tuna_error *err);

/* Text-to-image (no chat template); every label ignored. With pad_rows > 0
 * (reconstruction) the caption is followed by that many [PAD] rows, which the
 * clean image's embeddings replace (the reference's reca mode). */
tuna_status tuna_layout_t2i(const tuna_layout *l, const int32_t *caption, size_t caption_len, int pad_rows,
                            int patches, tuna_error *err);

/* Editing; every label ignored. */
tuna_status tuna_layout_edit(const tuna_layout *l, int source_patches, const int32_t *instruction,
                             size_t instruction_len, int target_patches, tuna_error *err);

/* Understanding, the reference's training layout (format_sequence_und): labels
 * BOS, BOI, ignored slots, EOI, every chat token, EOS (the "<image>" text stays
 * a token of the chat, as there; BOS's label is never used: CE is shifted). */
tuna_status tuna_layout_understanding(const tuna_layout *l, int patches, const int32_t *chat, size_t chat_len,
                                      tuna_error *err);

/* A chat with the <image> placeholder at chat index image_pos[k] replaced by
 * the segment of image k (patches[k] patches), k < n_images; every label
 * ignored (the caller labels turns, e.g. tuna_conversation_labels). */
tuna_status tuna_layout_chat(const tuna_layout *l, const int32_t *chat, size_t chat_len, const size_t *image_pos,
                             size_t n_images, const int *patches, tuna_error *err);

/* A tokenizer fits a model when every id it can produce lies inside the
 * model's embedding table (vocab_size) and the model's special tokens (BOS,
 * EOS, BOI, EOI, image_pad, pad) are ids of the tokenizer. Checked once, up
 * front, by every command that pairs the two: otherwise the first prompt
 * fails deep in the forward ("token id ... outside [0, V)"). */
tuna_status tuna_tokenizer_check_model(const tuna_tokenizer *tok, const tuna_config *config, tuna_error *err);

#endif
