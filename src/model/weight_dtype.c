/* --dtype: the precision the matmuls of a loaded model run in.
 *
 * Every matmul of the engine reads its weight matrix in the matrix's own
 * dtype and accumulates in f32 (src/ops/cpu/matmul.c): F32 matrices go to
 * OpenBLAS sgemm, BF16/F16 ones to our kernels that widen them in registers.
 * So the compute precision of a model is the dtype of its matrices, and
 * choosing it means converting them once at load time:
 *   f32   bf16/f16 checkpoints are widened (exact): twice the memory of the
 *         bf16 file, OpenBLAS sgemm for every product of more than a few
 *         rows, results identical to the file's weights;
 *   bf16  f32 checkpoints (what `tuna train` writes without mixed precision)
 *         are rounded to bf16 (round to nearest even, as torch's .to(bf16)):
 *         half the memory and bandwidth, the precision the official model
 *         ships in; f16 files are converted too.
 * Vectors (norms, biases) are f32 in the model already. A matrix shared by
 * two roles (tied embeddings) is converted once. Converted matrices are owned
 * by the model; the rest still point into the mapped checkpoint. Converting
 * again (f32, then bf16) frees the matrices the first conversion made. */
#include "model/tuna2.h"

#include "core/dtype.h"
#include "core/tensor.h"
#include "ops/cpu/quant.h"

#include <stdlib.h>
#include <string.h>

/* The addresses of every matrix pointer of the model. */
static int matrix_slots(tuna_model *m, const tuna_tensor ***slots) {
    const tuna_config *c = &m->config;
    int n = 0;
    slots[n++] = &m->embed_tokens;
    slots[n++] = &m->lm_head;
    slots[n++] = &m->patch_weight;
    slots[n++] = &m->time_weight0;
    slots[n++] = &m->time_weight2;
    for (int i = 0; i < c->llm.num_layers; i++) {
        tuna_llm_layer *l = &m->llm_layers[i];
        slots[n++] = &l->q_weight, slots[n++] = &l->k_weight, slots[n++] = &l->v_weight, slots[n++] = &l->o_weight;
        slots[n++] = &l->gate_weight, slots[n++] = &l->up_weight, slots[n++] = &l->down_weight;
    }
    for (int i = 0; i < c->head.num_layers; i++) {
        tuna_head_block *b = &m->head_blocks[i];
        slots[n++] = &b->q_weight, slots[n++] = &b->k_weight, slots[n++] = &b->v_weight, slots[n++] = &b->o_weight;
        slots[n++] = &b->gate_weight, slots[n++] = &b->up_weight, slots[n++] = &b->down_weight;
        slots[n++] = &b->modulation_weight;
    }
    slots[n++] = &m->final_layer.linear_weight;
    slots[n++] = &m->final_layer.modulation_weight;
    return n;
}

/* dst = src in dtype: f32 widening is tuna_tensor_to_f32; bf16 rounds each
 * element read as f32 (tuna_tensor_get_f32). Block-quantised matrices (GGUF)
 * are dequantised row by row first. */
static tuna_status convert_matrix(const tuna_tensor *src, tuna_dtype dtype, tuna_tensor *dst, tuna_error *err) {
    if (tuna_dtype_is_quantized(src->dtype)) {
        int64_t K = src->shape[src->ndim - 1], rows = tuna_tensor_numel(src) / K;
        TUNA_TRY(tuna_tensor_alloc(dst, TUNA_F32, src->ndim, src->shape, err));
        tuna_dequantize_rows(src->dtype, src->data, dst->data, 0, rows, K, NULL);
        if (dtype == TUNA_F32) return TUNA_OK;
        tuna_tensor wide = *dst;
        tuna_status s = tuna_tensor_alloc(dst, dtype, src->ndim, src->shape, err);
        for (int64_t i = 0; s == TUNA_OK && i < rows * K; i++)
            ((uint16_t *)dst->data)[i] = tuna_f32_to_bf16(((const float *)wide.data)[i]);
        tuna_tensor_free(&wide);
        return s;
    }
    if (src->dtype != TUNA_F32 && src->dtype != TUNA_BF16 && src->dtype != TUNA_F16)
        return tuna_fail(err, TUNA_ERR_FORMAT, "a weight matrix has dtype %s", tuna_dtype_name(src->dtype));
    if (dtype == TUNA_F32) return tuna_tensor_to_f32(src, dst, err);
    TUNA_TRY(tuna_tensor_alloc(dst, dtype, src->ndim, src->shape, err));
    int64_t n = tuna_tensor_numel(src);
    for (int64_t i = 0; i < n; i++) ((uint16_t *)dst->data)[i] = tuna_f32_to_bf16(tuna_tensor_get_f32(src, i));
    return TUNA_OK;
}

/* Frees the owned matrices no slot points to any more (replaced by a second
 * conversion) and closes the gaps in the list. */
static void drop_unreferenced(tuna_model *m, const tuna_tensor ***slots, int n) {
    int kept = 0;
    for (int k = 0; k < m->owned_matrix_count; k++) {
        tuna_tensor *t = m->owned_matrices[k];
        int used = 0;
        for (int i = 0; i < n && !used; i++) used = *slots[i] == t;
        if (used) {
            m->owned_matrices[kept++] = t;
        } else {
            tuna_tensor_free(t);
            free(t);
        }
    }
    m->owned_matrix_count = kept;
}

tuna_status tuna_model_set_weight_dtype(tuna_model *m, tuna_dtype dtype, tuna_error *err) {
    if (dtype != TUNA_F32 && dtype != TUNA_BF16)
        return tuna_fail(err, TUNA_ERR_INVALID, "weights can be converted to f32 or bf16, not %s", tuna_dtype_name(dtype));
    int capacity = 7 + 7 * m->config.llm.num_layers + 8 * m->config.head.num_layers;
    const tuna_tensor ***slots = calloc((size_t)capacity, sizeof *slots);
    const tuna_tensor **originals = calloc((size_t)capacity, sizeof *originals);
    /* a list of pointers: growing it never moves a tensor the model points to */
    tuna_tensor **owned = realloc(m->owned_matrices, sizeof *owned * (size_t)(m->owned_matrix_count + capacity));
    if (owned) m->owned_matrices = owned;
    if (!slots || !originals || !owned) {
        free(slots);
        free(originals);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    int n = matrix_slots(m, slots), first = m->owned_matrix_count;
    tuna_status st = TUNA_OK;
    for (int i = 0; i < n && st == TUNA_OK; i++) {
        const tuna_tensor *src = *slots[i];
        if (!src || src->dtype == dtype) continue;
        int seen = -1; /* converted already through another slot (tied weights) */
        for (int k = first; k < m->owned_matrix_count && seen < 0; k++)
            if (originals[k - first] == src) seen = k;
        if (seen >= 0) {
            *slots[i] = m->owned_matrices[seen];
            continue;
        }
        tuna_tensor *dst = calloc(1, sizeof *dst);
        st = dst ? convert_matrix(src, dtype, dst, err) : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        if (st != TUNA_OK) {
            free(dst);
            break;
        }
        originals[m->owned_matrix_count - first] = src;
        m->owned_matrices[m->owned_matrix_count++] = dst;
        *slots[i] = dst;
    }
    drop_unreferenced(m, slots, n);
    free(slots);
    free(originals);
    return st;
}
