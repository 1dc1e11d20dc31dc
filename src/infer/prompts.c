#include "infer/prompts.h"
#include "model/layout.h"

#include <string.h>

/* The default negative prompts of the reference's prediction configs. */
const char *const tuna_default_negative_t2i =
    "ugly, oversaturated, distorted, deformed, disfigured, low quality, worst quality, blurry, noisy, unrealistic, "
    "pixelated, overexposed, harsh shadows, washed out, dull colors, unnatural contrast, bad lighting, uneven "
    "lighting, unnatural reflections, color banding, unrealistic textures, poor shading, fake details, plastic skin, "
    "waxy skin, unrealistic skin tone, color bleeding, jpeg artifacts, watermark, frame border, compression "
    "artifacts, low-res, low resolution, poor composition, off-centered, messy background, cluttered, cropped head, "
    "cut-off body, wrong perspective, out of frame, bad framing, tilted horizon, unnatural pose, broken limbs, bad "
    "anatomy, bad proportions, extra limbs, missing limbs, fused fingers, extra fingers, twisted arms, stiff pose, "
    "awkward expression, asymmetrical eyes, mismatched eyes, lopsided face, disfigured mouth, bad hands, poorly "
    "drawn hands, poorly drawn face, uncanny face, creepy smile, unnatural gaze, doll-like face, distorted face, "
    "mutated body, duplicated parts, multiple heads, extra body parts, text artifacts, signature, logo, cartoonish, "
    "3d render, cgi, unreal engine, low depth, flat lighting, wrong focus, out of focus, motion blur, vignette, HDR "
    "effect, oversharpened, bad exposure, grainy, bad color balance, unrealistic highlights, poor white balance, low "
    "dynamic range";

const char *const tuna_default_negative_edit =
    "identity changed, different person, face altered, different facial features, lost subject, missing subject, "
    "replaced subject, drastic pose change, broken anatomy, extra limbs, missing limbs, distorted body, deformed "
    "face, hallucinated details, removed subject details, inconsistent lighting, mismatched style, oversaturated "
    "edit, unintended color shift, blurry, watermark, jpeg artifacts, text artifacts, low quality, worst quality, "
    "bad composition";

/* The caption's tokens, then the layout of model/layout.h. */
tuna_status tuna_t2i_ids(const tuna_tokenizer *tok, const tuna_config *c, const char *caption, int height, int width,
                         int pad_rows, tuna_ids *ids, tuna_error *err) {
    int patches;
    TUNA_TRY(tuna_layout_patches(height, width, c->patch_size, &patches, err));
    tuna_ids text = {0};
    tuna_layout l = {&c->tokens, ids, NULL};
    tuna_status s = tuna_tokenizer_encode(tok, caption, strlen(caption), &text, err);
    if (s == TUNA_OK) s = tuna_layout_t2i(&l, text.data, text.len, pad_rows, patches, err);
    tuna_ids_free(&text);
    return s;
}

tuna_status tuna_edit_ids(const tuna_tokenizer *tok, const tuna_config *c, const char *instruction, int source_h,
                          int source_w, int height, int width, tuna_ids *ids, tuna_error *err) {
    int source_patches, patches;
    TUNA_TRY(tuna_layout_patches(source_h, source_w, c->patch_size, &source_patches, err));
    TUNA_TRY(tuna_layout_patches(height, width, c->patch_size, &patches, err));
    tuna_ids text = {0};
    tuna_layout l = {&c->tokens, ids, NULL};
    tuna_status s = tuna_tokenizer_encode(tok, instruction, strlen(instruction), &text, err);
    if (s == TUNA_OK) s = tuna_layout_edit(&l, source_patches, text.data, text.len, patches, err);
    tuna_ids_free(&text);
    return s;
}
