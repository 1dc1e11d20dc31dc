/* The Fashion-MNIST judge of `tuna eval`: a 784-H-10 ReLU MLP trained in C on
 * the real training images with Adam on softmax cross-entropy, and the IDX
 * reader for the Debian package's files. See eval_judge.h. */
#include "eval/eval_judge.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "io/safetensors.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

tuna_status tuna_fashion_mlp_init(tuna_fashion_mlp *m, int hidden, uint64_t seed, tuna_error *err) {
    memset(m, 0, sizeof *m);
    if (hidden < 1 || hidden > 4096) return tuna_fail(err, TUNA_ERR_INVALID, "judge: hidden size %d", hidden);
    m->hidden = hidden;
    m->train_accuracy = m->test_accuracy = -1;
    m->w1 = malloc(sizeof(float) * (size_t)hidden * TUNA_FASHION_INPUTS);
    m->b1 = calloc((size_t)hidden, sizeof(float));
    m->w2 = malloc(sizeof(float) * (size_t)hidden * TUNA_FASHION_CLASSES);
    m->b2 = calloc(TUNA_FASHION_CLASSES, sizeof(float));
    if (!m->w1 || !m->b1 || !m->w2 || !m->b2) {
        tuna_fashion_mlp_free(m);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    /* He initialisation: N(0, 2 / fan_in) */
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    tuna_rng_fill_normal(&rng, m->w1, (long)hidden * TUNA_FASHION_INPUTS, 0, sqrtf(2.0f / TUNA_FASHION_INPUTS));
    tuna_rng_fill_normal(&rng, m->w2, (long)hidden * TUNA_FASHION_CLASSES, 0, sqrtf(2.0f / hidden));
    return TUNA_OK;
}

void tuna_fashion_mlp_free(tuna_fashion_mlp *m) {
    free(m->w1), free(m->b1), free(m->w2), free(m->b2);
    memset(m, 0, sizeof *m);
}

static const char *const mlp_names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

tuna_status tuna_fashion_mlp_load(const char *path, tuna_fashion_mlp *m, tuna_error *err) {
    memset(m, 0, sizeof *m);
    tuna_safetensors st;
    TUNA_TRY(tuna_safetensors_open(path, &st, err));
    const tuna_tensor *t[4];
    for (int i = 0; i < 4; i++) t[i] = tuna_safetensors_find(&st, mlp_names[i]);
    tuna_status s = TUNA_OK;
    int hidden = t[0] && t[0]->ndim == 2 ? (int)t[0]->shape[0] : 0;
    int shapes_ok = hidden > 0 && hidden <= 4096 && t[0]->shape[1] == TUNA_FASHION_INPUTS && t[1] &&
                    t[1]->ndim == 1 && t[1]->shape[0] == hidden && t[2] && t[2]->ndim == 2 &&
                    t[2]->shape[0] == TUNA_FASHION_CLASSES && t[2]->shape[1] == hidden && t[3] && t[3]->ndim == 1 &&
                    t[3]->shape[0] == TUNA_FASHION_CLASSES;
    for (int i = 0; shapes_ok && i < 4; i++) shapes_ok = t[i]->dtype == TUNA_F32;
    if (!shapes_ok)
        s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: want F32 fc1.weight [H,784], fc1.bias [H], fc2.weight [10,H], fc2.bias [10]",
                      path);
    if (s == TUNA_OK) s = tuna_fashion_mlp_init(m, hidden, 0, err);
    if (s == TUNA_OK) {
        float *dst[4] = {m->w1, m->b1, m->w2, m->b2};
        for (int i = 0; i < 4; i++) memcpy(dst[i], t[i]->data, tuna_tensor_nbytes(t[i]));
        const char *a = tuna_safetensors_metadata_get(&st, "train_accuracy");
        const char *b = tuna_safetensors_metadata_get(&st, "test_accuracy");
        m->train_accuracy = a ? atof(a) : -1;
        m->test_accuracy = b ? atof(b) : -1;
    }
    tuna_safetensors_close(&st);
    return s;
}

tuna_status tuna_fashion_mlp_save(const char *path, const tuna_fashion_mlp *m, tuna_error *err) {
    int64_t s1[2] = {m->hidden, TUNA_FASHION_INPUTS}, s2[1] = {m->hidden}, s3[2] = {TUNA_FASHION_CLASSES, m->hidden},
            s4[1] = {TUNA_FASHION_CLASSES};
    tuna_tensor t[4];
    tuna_tensor_init_view(&t[0], TUNA_F32, 2, s1, m->w1);
    tuna_tensor_init_view(&t[1], TUNA_F32, 1, s2, m->b1);
    tuna_tensor_init_view(&t[2], TUNA_F32, 2, s3, m->w2);
    tuna_tensor_init_view(&t[3], TUNA_F32, 1, s4, m->b2);
    char train[32], test[32];
    snprintf(train, sizeof train, "%.4f", m->train_accuracy);
    snprintf(test, sizeof test, "%.4f", m->test_accuracy);
    const char *meta[] = {"train_accuracy", train, "test_accuracy", test,
                          "input", "max(R,G,B) of the centred 28x28 crop / its maximum", NULL};
    return tuna_safetensors_write(path, t, mlp_names, 4, meta, err);
}

void tuna_fashion_input_gray(const uint8_t *gray, float x[TUNA_FASHION_INPUTS]) {
    int top = 0;
    for (int i = 0; i < TUNA_FASHION_INPUTS; i++) top = gray[i] > top ? gray[i] : top;
    float scale = top ? 1.0f / top : 0.0f;
    for (int i = 0; i < TUNA_FASHION_INPUTS; i++) x[i] = gray[i] * scale;
}

tuna_status tuna_fashion_input(const tuna_image *img, float x[TUNA_FASHION_INPUTS], tuna_error *err) {
    /* make_dataset.fashion_box: the item's square is round(S * 28 / 32), centred */
    int side = img->width < img->height ? img->width : img->height;
    int box = (int)lround(side * 28.0 / 32.0);
    if (box < 8) box = 8;
    if (box > side) box = side;
    tuna_image crop = {0}, sized = {0};
    TUNA_TRY(tuna_image_crop(img, (img->width - box) / 2, (img->height - box) / 2, box, box, &crop, err));
    const tuna_image *use = &crop;
    if (box != TUNA_FASHION_SIDE) {
        tuna_status s = tuna_image_resize_bicubic(&crop, TUNA_FASHION_SIDE, TUNA_FASHION_SIDE, &sized, err);
        if (s != TUNA_OK) {
            tuna_image_free(&crop);
            return s;
        }
        use = &sized;
    }
    uint8_t gray[TUNA_FASHION_INPUTS];
    for (int i = 0; i < TUNA_FASHION_INPUTS; i++) {
        const uint8_t *p = use->rgb + 3 * i;
        int mx = p[0] > p[1] ? p[0] : p[1];
        gray[i] = (uint8_t)(p[2] > mx ? p[2] : mx);
    }
    tuna_fashion_input_gray(gray, x);
    tuna_image_free(&crop);
    tuna_image_free(&sized);
    return TUNA_OK;
}

/* hidden = relu(W1 x + b1); logits = W2 hidden + b2 */
static void forward_one(const tuna_fashion_mlp *m, const float *x, float *hidden, float *logits) {
    for (int h = 0; h < m->hidden; h++) {
        const float *w = m->w1 + (size_t)h * TUNA_FASHION_INPUTS;
        float s = m->b1[h];
        for (int i = 0; i < TUNA_FASHION_INPUTS; i++) s += w[i] * x[i];
        hidden[h] = s > 0 ? s : 0;
    }
    for (int c = 0; c < TUNA_FASHION_CLASSES; c++) {
        const float *w = m->w2 + (size_t)c * m->hidden;
        float s = m->b2[c];
        for (int h = 0; h < m->hidden; h++) s += w[h] * hidden[h];
        logits[c] = s;
    }
}

int tuna_fashion_mlp_classify(const tuna_fashion_mlp *m, const float *x, float *hidden_out) {
    float local[4096], logits[TUNA_FASHION_CLASSES];
    float *hidden = hidden_out ? hidden_out : local;
    forward_one(m, x, hidden, logits);
    int best = 0;
    for (int c = 1; c < TUNA_FASHION_CLASSES; c++)
        if (logits[c] > logits[best]) best = c;
    return best;
}

double tuna_fashion_mlp_accuracy(const tuna_fashion_mlp *m, const uint8_t *images, const uint8_t *labels, int n) {
    long right = 0;
    float x[TUNA_FASHION_INPUTS];
    for (int i = 0; i < n; i++) {
        tuna_fashion_input_gray(images + (size_t)i * TUNA_FASHION_INPUTS, x);
        right += tuna_fashion_mlp_classify(m, x, NULL) == labels[i];
    }
    return n ? (double)right / n : 0;
}

/* ---- training ----------------------------------------------------------------- */
typedef struct {
    float *m, *v;
} adam_state;

/* Adam (beta1 0.9, beta2 0.999, eps 1e-8) with bias correction, step t >= 1. */
static void adam_update(float *w, const float *g, adam_state *s, long n, float lr, int t) {
    const float b1 = 0.9f, b2 = 0.999f;
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    for (long i = 0; i < n; i++) {
        s->m[i] = b1 * s->m[i] + (1 - b1) * g[i];
        s->v[i] = b2 * s->v[i] + (1 - b2) * g[i] * g[i];
        w[i] -= lr * (s->m[i] / c1) / (sqrtf(s->v[i] / c2) + 1e-8f);
    }
}

tuna_status tuna_fashion_mlp_train(tuna_fashion_mlp *m, const uint8_t *images, const uint8_t *labels, int n,
                                   const tuna_fashion_train_params *p, tuna_error *err) {
    const int D = TUNA_FASHION_INPUTS, C = TUNA_FASHION_CLASSES, H = m->hidden, B = p->batch;
    if (n < 1 || B < 1 || p->epochs < 1) return tuna_fail(err, TUNA_ERR_INVALID, "judge training: empty data or batch");
    long sizes[4] = {(long)H * D, H, (long)C * H, C};
    float *params[4] = {m->w1, m->b1, m->w2, m->b2};
    float *grads[4] = {0};
    adam_state st[4] = {{0}};
    float *X = malloc(sizeof(float) * (size_t)B * D), *Hd = malloc(sizeof(float) * (size_t)B * H);
    float *L = malloc(sizeof(float) * (size_t)B * C), *dH = malloc(sizeof(float) * (size_t)B * H);
    int *order = malloc(sizeof(int) * (size_t)n);
    int ok = X && Hd && L && dH && order;
    for (int i = 0; i < 4; i++) {
        grads[i] = malloc(sizeof(float) * (size_t)sizes[i]);
        st[i].m = calloc((size_t)sizes[i], sizeof(float));
        st[i].v = calloc((size_t)sizes[i], sizeof(float));
        ok = ok && grads[i] && st[i].m && st[i].v;
    }
    tuna_status status = ok ? TUNA_OK : tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    tuna_rng rng;
    tuna_rng_seed(&rng, p->seed);
    for (int i = 0; ok && i < n; i++) order[i] = i;
    int step = 0;
    for (int epoch = 0; ok && epoch < p->epochs; epoch++) {
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)tuna_rng_below(&rng, (uint64_t)i + 1), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        double loss_sum = 0;
        for (int start = 0; start < n; start += B) {
            int b = n - start < B ? n - start : B;
            for (int r = 0; r < b; r++)
                tuna_fashion_input_gray(images + (size_t)order[start + r] * D, X + (size_t)r * D);
            /* Hd = relu(X W1^T + b1) */
            for (int r = 0; r < b; r++) memcpy(Hd + (size_t)r * H, m->b1, sizeof(float) * H);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, H, D, 1.0f, X, D, m->w1, D, 1.0f, Hd, H);
            for (long i = 0; i < (long)b * H; i++) Hd[i] = Hd[i] > 0 ? Hd[i] : 0;
            /* L = Hd W2^T + b2, then dL = (softmax(L) - onehot) / b */
            for (int r = 0; r < b; r++) memcpy(L + (size_t)r * C, m->b2, sizeof(float) * C);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, b, C, H, 1.0f, Hd, H, m->w2, H, 1.0f, L, C);
            for (int r = 0; r < b; r++) {
                float *l = L + (size_t)r * C, mx = l[0], sum = 0;
                for (int c = 1; c < C; c++) mx = l[c] > mx ? l[c] : mx;
                for (int c = 0; c < C; c++) sum += (l[c] = expf(l[c] - mx));
                int y = labels[order[start + r]];
                loss_sum -= log(l[y] / sum + 1e-30);
                for (int c = 0; c < C; c++) l[c] = (l[c] / sum - (c == y)) / b;
            }
            /* grads: W2 = dL^T Hd, b2 = sum dL, dH = dL W2 * (Hd > 0), W1 = dH^T X, b1 = sum dH */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, H, b, 1.0f, L, C, Hd, H, 0.0f, grads[2], H);
            memset(grads[3], 0, sizeof(float) * C);
            for (int r = 0; r < b; r++)
                for (int c = 0; c < C; c++) grads[3][c] += L[(size_t)r * C + c];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b, H, C, 1.0f, L, C, m->w2, H, 0.0f, dH, H);
            for (long i = 0; i < (long)b * H; i++)
                if (Hd[i] <= 0) dH[i] = 0;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, D, b, 1.0f, dH, H, X, D, 0.0f, grads[0], D);
            memset(grads[1], 0, sizeof(float) * H);
            for (int r = 0; r < b; r++)
                for (int h = 0; h < H; h++) grads[1][h] += dH[(size_t)r * H + h];
            step++;
            for (int i = 0; i < 4; i++) adam_update(params[i], grads[i], &st[i], sizes[i], p->learning_rate, step);
        }
        if (p->verbose) fprintf(stderr, "judge epoch %d/%d: loss %.4f\n", epoch + 1, p->epochs, loss_sum / n);
    }
    for (int i = 0; i < 4; i++) free(grads[i]), free(st[i].m), free(st[i].v);
    free(X), free(Hd), free(L), free(dH), free(order);
    return status;
}

/* ---- IDX files ---------------------------------------------------------------- */
tuna_status tuna_idx_load(const char *path, uint8_t **data, int dims[3], int *ndims, tuna_error *err) {
    *data = NULL;
    gzFile f = gzopen(path, "rb"); /* reads plain files too */
    if (!f) return tuna_fail(err, TUNA_ERR_IO, "cannot open %s", path);
    uint8_t head[4 + 12];
    tuna_status s = TUNA_OK;
    if (gzread(f, head, 4) != 4 || head[0] || head[1] || head[2] != 0x08 || head[3] < 1 || head[3] > 3) {
        s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: not an unsigned-byte IDX file of 1 to 3 dimensions", path);
    } else {
        *ndims = head[3];
        size_t total = 1;
        if (gzread(f, head + 4, (unsigned)(4 * *ndims)) != 4 * *ndims) {
            s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: truncated header", path);
        } else {
            for (int i = 0; i < *ndims && s == TUNA_OK; i++) {
                const uint8_t *q = head + 4 + 4 * i;
                uint32_t d = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
                if (d == 0 || d > (1u << 24) || tuna_mul_overflows(total, d, &total) || total > (1u << 30))
                    s = tuna_fail(err, TUNA_ERR_LIMIT, "%s: dimension %u refused", path, d);
                dims[i] = (int)d;
            }
        }
        if (s == TUNA_OK) {
            *data = malloc(total);
            if (!*data) s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
            else if ((size_t)gzread(f, *data, (unsigned)total) != total)
                s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: truncated data", path);
        }
    }
    gzclose(f);
    if (s != TUNA_OK) free(*data), *data = NULL;
    return s;
}
