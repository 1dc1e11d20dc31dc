#include "infer/prompts.h"

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

tuna_status tuna_push_image_segment(tuna_ids *ids, const tuna_config *c, int height, int width, tuna_error *err) {
    if (height <= 0 || width <= 0 || height % c->patch_size || width % c->patch_size)
        return tuna_fail(err, TUNA_ERR_INVALID, "image size %dx%d is not a positive multiple of the patch size %d",
                         height, width, c->patch_size);
    long n = (long)(height / c->patch_size) * (width / c->patch_size);
    TUNA_TRY(tuna_ids_push(ids, c->tokens.boi, err));
    for (long i = 0; i < n + 1; i++) TUNA_TRY(tuna_ids_push(ids, c->tokens.image_pad, err));
    return tuna_ids_push(ids, c->tokens.eoi, err);
}

tuna_status tuna_t2i_ids(const tuna_tokenizer *tok, const tuna_config *c, const char *caption, int height, int width,
                         int pad_rows, tuna_ids *ids, tuna_error *err) {
    TUNA_TRY(tuna_ids_push(ids, c->tokens.bos, err));
    TUNA_TRY(tuna_tokenizer_encode(tok, caption, strlen(caption), ids, err));
    for (int i = 0; i < pad_rows; i++) TUNA_TRY(tuna_ids_push(ids, c->tokens.pad, err));
    TUNA_TRY(tuna_push_image_segment(ids, c, height, width, err));
    return tuna_ids_push(ids, c->tokens.eos, err);
}

tuna_status tuna_edit_ids(const tuna_tokenizer *tok, const tuna_config *c, const char *instruction, int source_h,
                          int source_w, int height, int width, tuna_ids *ids, tuna_error *err) {
    TUNA_TRY(tuna_ids_push(ids, c->tokens.bos, err));
    TUNA_TRY(tuna_push_image_segment(ids, c, source_h, source_w, err));
    TUNA_TRY(tuna_tokenizer_encode(tok, instruction, strlen(instruction), ids, err));
    TUNA_TRY(tuna_push_image_segment(ids, c, height, width, err));
    return tuna_ids_push(ids, c->tokens.eos, err);
}
