/* Detection of re-initialised units from the weights alone (restore.h). */
#include "train/restore.h"
#include "core/tensor.h"
#include "model/config_json.h"
#include "core/mapped_file.h"
#include "ops/cpu/quant.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLE_MAX 512   /* rows and columns read per matrix */
#define POWER_STEPS 30   /* power iterations: a trained gap (> 1.4x) converges in a few; with no gap it underestimates (fresh stays fresh) */
#define VECTOR_TRAINED 10.0 /* evidence of a non-constant vector in a unit made of vectors only */

int tuna_restore_in_unit(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 && (name[n] == '.' || name[n] == '\0');
}

tuna_status tuna_restore_units(const tuna_config *c, char (**prefixes)[64], int *count, tuna_error *err) {
    int n = c->llm.num_layers + c->head.num_layers + 7;
    char(*p)[64] = calloc((size_t)n, sizeof *p);
    if (!p) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int l = 0; l < c->llm.num_layers; l++) snprintf(p[k++], 64, "tuna.model.layers.%d", l);
    for (int l = 0; l < c->head.num_layers; l++) snprintf(p[k++], 64, "diffusion_head_a.%d", l);
    const char *rest[] = {"diffusion_head_b", "time_embed", "vision_encoder", "tuna.model.embed_tokens",
                          "tuna.lm_head", "tuna.model.norm"};
    for (size_t i = 0; i < sizeof rest / sizeof *rest; i++) {
        if (c->llm.tie_word_embeddings && strcmp(rest[i], "tuna.lm_head") == 0) continue;
        snprintf(p[k++], 64, "%s", rest[i]);
    }
    *prefixes = p;
    *count = k;
    return TUNA_OK;
}

/* ---- the statistic ----------------------------------------------------------- */

double tuna_spectral_excess(const float *w, int64_t m, int64_t n) {
    double sum_sq = 0;
    for (int64_t i = 0; i < m * n; i++) sum_sq += (double)w[i] * w[i];
    double rms = sqrt(sum_sq / (double)(m * n));
    if (!(rms > 0) || !isfinite(rms)) return 0.0; /* a zeroed matrix: adaLN zero-init */
    double *v = malloc(sizeof(double) * (size_t)n), *u = malloc(sizeof(double) * (size_t)m);
    if (!v || !u) {
        free(v), free(u);
        return NAN;
    }
    /* a fixed start with a component along every direction */
    double norm = 0;
    for (int64_t j = 0; j < n; j++) v[j] = 1.0 + 0.5 * sin(0.7 * (double)j), norm += v[j] * v[j];
    for (int64_t j = 0; j < n; j++) v[j] /= sqrt(norm);
    double lambda = 0; /* ||W^T W v|| for a unit v: sigma_max^2 at convergence */
    for (int step = 0; step < POWER_STEPS; step++) {
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t j = 0; j < n; j++) s += (double)w[i * n + j] * v[j];
            u[i] = s;
        }
        for (int64_t j = 0; j < n; j++) v[j] = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) v[j] += (double)w[i * n + j] * u[i];
        norm = 0;
        for (int64_t j = 0; j < n; j++) norm += v[j] * v[j];
        lambda = sqrt(norm);
        if (!(lambda > 0)) break;
        for (int64_t j = 0; j < n; j++) v[j] /= lambda;
    }
    free(v);
    free(u);
    return sqrt(lambda) / (rms * (sqrt((double)m) + sqrt((double)n)));
}

/* Evenly spaced rows and columns of a matrix (any 2D+ tensor seen as
 * [shape[0], rest]) into f32: at most SAMPLE_MAX of each. */
static tuna_status sample_matrix(const tuna_tensor *t, float **out, int64_t *rows, int64_t *cols, tuna_error *err) {
    int64_t m = t->shape[0], n = tuna_tensor_numel(t) / m;
    int64_t sm = m < SAMPLE_MAX ? m : SAMPLE_MAX, sn = n < SAMPLE_MAX ? n : SAMPLE_MAX;
    float *s = malloc(sizeof(float) * (size_t)(sm * sn)), *row = NULL;
    int quantized = tuna_dtype_is_quantized(t->dtype);
    if (quantized) row = malloc(sizeof(float) * (size_t)n);
    if (!s || (quantized && !row)) {
        free(s), free(row);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    size_t row_bytes = quantized ? (size_t)(n / tuna_dtype_block_size(t->dtype)) * tuna_dtype_block_bytes(t->dtype) : 0;
    for (int64_t a = 0; a < sm; a++) {
        int64_t r = a * m / sm;
        if (quantized && tuna_dequantize_row(t->dtype, (const char *)t->data + (size_t)r * row_bytes, row, n) != 0) {
            free(s), free(row);
            return tuna_fail(err, TUNA_ERR_UNSUPPORTED, "cannot read %s rows", tuna_dtype_name(t->dtype));
        }
        for (int64_t b = 0; b < sn; b++) {
            int64_t col = b * n / sn;
            s[a * sn + b] = quantized ? row[col] : tuna_tensor_get_f32(t, r * n + col);
        }
    }
    free(row);
    *out = s, *rows = sm, *cols = sn;
    return TUNA_OK;
}

static int is_constant(const tuna_tensor *t) {
    int64_t n = tuna_tensor_numel(t);
    float first = tuna_tensor_get_f32(t, 0);
    for (int64_t i = 1; i < n; i++)
        if (tuna_tensor_get_f32(t, i) != first) return 0;
    return 1;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The evidence of one unit: matrices give their excess, constant vectors 0,
 * other vectors nothing unless the unit has no matrix. */
static tuna_status score_unit(tuna_restore_unit *u, const tuna_expected_tensor *list, size_t count,
                              tuna_tensor_lookup_fn find, void *ctx, tuna_error *err) {
    double *evidence = malloc(sizeof(double) * (count ? count : 1));
    if (!evidence) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    int n = 0, trained_vectors = 0;
    u->min_excess = INFINITY, u->max_excess = 0;
    for (size_t i = 0; i < count; i++) {
        if (!tuna_restore_in_unit(list[i].name, u->prefix)) continue;
        const tuna_tensor *t = find(ctx, list[i].name);
        if (!t) {
            free(evidence);
            return tuna_fail(err, TUNA_ERR_FORMAT, "tensor %s is missing", list[i].name);
        }
        if (list[i].ndim >= 2) {
            float *s = NULL;
            int64_t rows = 0, cols = 0;
            tuna_status st = sample_matrix(t, &s, &rows, &cols, err);
            if (st != TUNA_OK) {
                free(evidence);
                return st;
            }
            double e = tuna_spectral_excess(s, rows, cols);
            free(s);
            u->matrices++;
            u->fresh_matrices += e < TUNA_RESTORE_THRESHOLD;
            u->min_excess = fmin(u->min_excess, e), u->max_excess = fmax(u->max_excess, e);
            evidence[n++] = e;
        } else if (is_constant(t)) {
            u->vectors++, u->constant_vectors++;
            evidence[n++] = 0.0;
        } else {
            u->vectors++, trained_vectors++;
        }
    }
    for (int i = 0; u->matrices == 0 && i < trained_vectors; i++) evidence[n++] = VECTOR_TRAINED;
    if (u->matrices == 0) u->min_excess = u->max_excess = 0;
    u->score = n ? median(evidence, n) : VECTOR_TRAINED;
    free(evidence);
    return TUNA_OK;
}

tuna_status tuna_restore_detect(const tuna_config *c, tuna_tensor_lookup_fn find, void *ctx,
                                tuna_restore_detection *out, tuna_error *err) {
    memset(out, 0, sizeof *out);
    out->threshold = TUNA_RESTORE_THRESHOLD;
    tuna_expected_tensor *list = NULL;
    size_t count = 0;
    char(*prefixes)[64] = NULL;
    int units = 0;
    TUNA_TRY(tuna_config_expected_tensors(c, &list, &count, err));
    tuna_status s = tuna_restore_units(c, &prefixes, &units, err);
    if (s == TUNA_OK && !(out->units = calloc((size_t)units, sizeof *out->units)))
        s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    for (int i = 0; s == TUNA_OK && i < units; i++) {
        tuna_restore_unit *u = &out->units[out->count++];
        snprintf(u->prefix, sizeof u->prefix, "%s", prefixes[i]);
        s = score_unit(u, list, count, find, ctx, err);
        u->damaged = u->score < out->threshold;
        u->margin = fabs(u->score - out->threshold) / out->threshold;
    }
    free(list);
    free(prefixes);
    if (s != TUNA_OK) tuna_restore_detection_free(out);
    return s;
}

void tuna_restore_detection_free(tuna_restore_detection *d) {
    free(d->units);
    memset(d, 0, sizeof *d);
}

cJSON *tuna_restore_units_json(const tuna_restore_detection *d) {
    cJSON *units = cJSON_CreateArray();
    for (int i = 0; units && i < d->count; i++) {
        const tuna_restore_unit *u = &d->units[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "prefix", u->prefix);
        cJSON_AddBoolToObject(j, "damaged", u->damaged);
        cJSON_AddNumberToObject(j, "score", u->score);
        cJSON_AddNumberToObject(j, "margin", u->margin);
        cJSON_AddNumberToObject(j, "matrices", u->matrices);
        cJSON_AddNumberToObject(j, "fresh_matrices", u->fresh_matrices);
        cJSON_AddNumberToObject(j, "min_excess", u->min_excess);
        cJSON_AddNumberToObject(j, "max_excess", u->max_excess);
        cJSON_AddNumberToObject(j, "vectors", u->vectors);
        cJSON_AddNumberToObject(j, "constant_vectors", u->constant_vectors);
        cJSON_AddItemToArray(units, j);
    }
    return units;
}

static tuna_status write_text(FILE *out, void *ctx, tuna_error *err) {
    if (fputs(ctx, out) < 0 || fputc('\n', out) == EOF) return tuna_fail(err, TUNA_ERR_IO, "write failed");
    return TUNA_OK;
}

tuna_status tuna_restore_json_save(const char *path, cJSON *root, tuna_error *err) {
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_status s = tuna_write_file_atomic(path, write_text, text, err);
    free(text);
    return s;
}

tuna_status tuna_restore_detection_save(const char *path, const tuna_restore_detection *d, tuna_error *err) {
    cJSON *root = cJSON_CreateObject();
    if (root) cJSON_AddNumberToObject(root, "threshold", d->threshold);
    if (root) cJSON_AddItemToObject(root, "units", tuna_restore_units_json(d));
    return tuna_restore_json_save(path, root, err);
}
