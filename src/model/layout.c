#include "model/layout.h"

tuna_status tuna_layout_patches(int height, int width, int patch, int *patches, tuna_error *err) {
    if (patch <= 0 || height <= 0 || width <= 0 || height % patch || width % patch)
        return tuna_fail(err, TUNA_ERR_INVALID, "image size %dx%d is not a positive multiple of the patch size %d",
                         height, width, patch);
    long n = (long)(height / patch) * (width / patch);
    if (n > (1 << 28)) return tuna_fail(err, TUNA_ERR_INVALID, "image size %dx%d: too many patches", height, width);
    *patches = (int)n;
    return TUNA_OK;
}

tuna_status tuna_layout_push(const tuna_layout *l, int32_t id, int32_t label, tuna_error *err) {
    TUNA_TRY(tuna_ids_push(l->ids, id, err));
    return l->labels ? tuna_ids_push(l->labels, label, err) : TUNA_OK;
}

tuna_status tuna_layout_push_text(const tuna_layout *l, const int32_t *ids, size_t n, int labelled, tuna_error *err) {
    for (size_t i = 0; i < n; i++) TUNA_TRY(tuna_layout_push(l, ids[i], labelled ? ids[i] : TUNA_IGNORE_LABEL, err));
    return TUNA_OK;
}

tuna_status tuna_layout_image_segment(const tuna_layout *l, int patches, int32_t boi_label, int32_t eoi_label,
                                      tuna_error *err) {
    TUNA_TRY(tuna_layout_push(l, l->tokens->boi, boi_label, err));
    for (int k = 0; k < patches + 1; k++) TUNA_TRY(tuna_layout_push(l, l->tokens->image_pad, TUNA_IGNORE_LABEL, err));
    return tuna_layout_push(l, l->tokens->eoi, eoi_label, err);
}

tuna_status tuna_layout_t2i(const tuna_layout *l, const int32_t *caption, size_t caption_len, int pad_rows,
                            int patches, tuna_error *err) {
    const tuna_special_tokens *tk = l->tokens;
    TUNA_TRY(tuna_layout_push(l, tk->bos, TUNA_IGNORE_LABEL, err));
    TUNA_TRY(tuna_layout_push_text(l, caption, caption_len, 0, err));
    for (int i = 0; i < pad_rows; i++) TUNA_TRY(tuna_layout_push(l, tk->pad, TUNA_IGNORE_LABEL, err));
    TUNA_TRY(tuna_layout_image_segment(l, patches, TUNA_IGNORE_LABEL, TUNA_IGNORE_LABEL, err));
    return tuna_layout_push(l, tk->eos, TUNA_IGNORE_LABEL, err);
}

tuna_status tuna_layout_edit(const tuna_layout *l, int source_patches, const int32_t *instruction,
                             size_t instruction_len, int target_patches, tuna_error *err) {
    TUNA_TRY(tuna_layout_push(l, l->tokens->bos, TUNA_IGNORE_LABEL, err));
    TUNA_TRY(tuna_layout_image_segment(l, source_patches, TUNA_IGNORE_LABEL, TUNA_IGNORE_LABEL, err));
    TUNA_TRY(tuna_layout_push_text(l, instruction, instruction_len, 0, err));
    TUNA_TRY(tuna_layout_image_segment(l, target_patches, TUNA_IGNORE_LABEL, TUNA_IGNORE_LABEL, err));
    return tuna_layout_push(l, l->tokens->eos, TUNA_IGNORE_LABEL, err);
}

tuna_status tuna_layout_understanding(const tuna_layout *l, int patches, const int32_t *chat, size_t chat_len,
                                      tuna_error *err) {
    const tuna_special_tokens *tk = l->tokens;
    TUNA_TRY(tuna_layout_push(l, tk->bos, tk->bos, err));
    TUNA_TRY(tuna_layout_image_segment(l, patches, tk->boi, tk->eoi, err));
    TUNA_TRY(tuna_layout_push_text(l, chat, chat_len, 1, err));
    return tuna_layout_push(l, tk->eos, tk->eos, err);
}

tuna_status tuna_layout_chat(const tuna_layout *l, const int32_t *chat, size_t chat_len, const size_t *image_pos,
                             size_t n_images, const int *patches, tuna_error *err) {
    size_t k = 0;
    for (size_t i = 0; i < chat_len; i++) {
        if (k < n_images && image_pos[k] == i) {
            TUNA_TRY(tuna_layout_image_segment(l, patches[k], TUNA_IGNORE_LABEL, TUNA_IGNORE_LABEL, err));
            k++;
        } else {
            TUNA_TRY(tuna_layout_push(l, chat[i], TUNA_IGNORE_LABEL, err));
        }
    }
    return TUNA_OK;
}

tuna_status tuna_tokenizer_check_model(const tuna_tokenizer *tok, const tuna_config *c, tuna_error *err) {
    int32_t n = tuna_tokenizer_vocab_size(tok);
    if (n > c->vocab_size)
        return tuna_fail(err, TUNA_ERR_INVALID,
                         "the tokenizer has %d tokens but the model's vocabulary is %d: it is not this model's "
                         "tokenizer (give the right one with -t FILE)",
                         (int)n, c->vocab_size);
    const struct {
        const char *name;
        int id;
    } special[] = {{"bos", c->tokens.bos}, {"eos", c->tokens.eos}, {"boi", c->tokens.boi},
                   {"eoi", c->tokens.eoi}, {"image_pad", c->tokens.image_pad}, {"pad", c->tokens.pad}};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
        size_t len = 0;
        if (special[i].id < 0 || special[i].id >= n || !tuna_tokenizer_token_bytes(tok, special[i].id, &len))
            return tuna_fail(err, TUNA_ERR_INVALID,
                             "the model's %s token %d is not a token of the tokenizer (%d tokens): it is not this "
                             "model's tokenizer (give the right one with -t FILE)",
                             special[i].name, special[i].id, (int)n);
    }
    return TUNA_OK;
}
