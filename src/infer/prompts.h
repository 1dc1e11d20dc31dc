/* Token ids of the generation tasks from their text (the layouts themselves:
 * model/layout.h, SPEC section 3) and the reference's default negative
 * prompts (configs/predict/t2i.yaml, edit.yaml). */
#ifndef TUNA_INFER_PROMPTS_H
#define TUNA_INFER_PROMPTS_H

#include "model/config.h"
#include "text/tokenizer.h"

extern const char *const tuna_default_negative_t2i;
extern const char *const tuna_default_negative_edit;

/* text-to-image: [BOS] caption [BOI][t][N patches][EOI][EOS] (no chat template).
 * With pad_rows > 0 (reconstruction), caption is followed by that many [PAD]
 * rows, which the clean image's embeddings replace (the reference's reca mode). */
tuna_status tuna_t2i_ids(const tuna_tokenizer *tok, const tuna_config *c, const char *caption, int height, int width,
                         int pad_rows, tuna_ids *ids, tuna_error *err);

/* editing: [BOS][BOI][t][source N][EOI] instruction [BOI][t][target N][EOI][EOS]. */
tuna_status tuna_edit_ids(const tuna_tokenizer *tok, const tuna_config *c, const char *instruction, int source_h,
                          int source_w, int height, int width, tuna_ids *ids, tuna_error *err);

#endif
