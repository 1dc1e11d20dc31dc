/* Losses of SPEC sections 5 and 9, forward and backward side by side. */
#include "ops/ops.h"

#include <math.h>
#include <string.h>

static double row_logsumexp(const float *row, int vocab) {
    float max = row[0];
    for (int j = 1; j < vocab; j++)
        if (row[j] > max) max = row[j];
    double sum = 0;
    for (int j = 0; j < vocab; j++) sum += exp((double)row[j] - max);
    return max + log(sum);
}

static int label_counts(const int32_t *labels, int i, int vocab) {
    int32_t y = labels[i + 1];
    return y != -100 && y >= 0 && y < vocab;
}

float tuna_cross_entropy_shifted_forward(const float *logits, const int32_t *labels, int length, int vocab,
                                         int *count, int *invalid) {
    double total = 0;
    int n = 0, bad = 0;
    for (int i = 0; i + 1 < length; i++) {
        if (labels[i + 1] == -100) continue;
        if (!label_counts(labels, i, vocab)) { bad++; continue; }
        const float *row = logits + (size_t)i * vocab;
        total += row_logsumexp(row, vocab) - row[labels[i + 1]];
        n++;
    }
    if (count) *count = n;
    if (invalid) *invalid = bad;
    return n ? (float)(total / n) : 0.0f;
}

void tuna_cross_entropy_shifted_backward(const float *logits, const int32_t *labels, int length, int vocab,
                                         float dloss, float *dlogits) {
    int n = 0;
    for (int i = 0; i + 1 < length; i++) n += label_counts(labels, i, vocab);
    memset(dlogits, 0, sizeof(float) * (size_t)length * vocab);
    if (n == 0) return;
    /* d/dz_j [logsumexp(z) - z_y] = softmax(z)_j - [j == y], averaged over n rows */
    for (int i = 0; i + 1 < length; i++) {
        if (!label_counts(labels, i, vocab)) continue;
        const float *row = logits + (size_t)i * vocab;
        float *grad = dlogits + (size_t)i * vocab;
        double lse = row_logsumexp(row, vocab);
        for (int j = 0; j < vocab; j++) grad[j] = (float)(exp((double)row[j] - lse) * dloss / n);
        grad[labels[i + 1]] -= dloss / n;
    }
}

static long flow_element_count(const uint8_t *flow_images, const long *count, int images) {
    long n = 0;
    for (int k = 0; k < images; k++)
        if (flow_images[k]) n += count[k];
    return n;
}

float tuna_flow_loss_forward(const float *const *x_pred, const float *const *targets, const float *t,
                             const uint8_t *flow_images, const long *count, int images, float t_eps) {
    long n = flow_element_count(flow_images, count, images);
    if (n == 0) return 0.0f;
    double total = 0;
    for (int k = 0; k < images; k++) {
        if (!flow_images[k]) continue;
        double denom = fmax(1.0 - (double)t[k], (double)t_eps);
        double sum = 0;
        for (long i = 0; i < count[k]; i++) {
            double d = (double)x_pred[k][i] - targets[k][i];
            sum += d * d;
        }
        total += sum / (denom * denom);
    }
    return (float)(total / n);
}

void tuna_flow_loss_backward(const float *const *x_pred, const float *const *targets, const float *t,
                             const uint8_t *flow_images, const long *count, int images, float t_eps, float dloss,
                             float *const *dx_pred) {
    long n = flow_element_count(flow_images, count, images);
    for (int k = 0; k < images; k++) {
        if (!flow_images[k] || n == 0) {
            memset(dx_pred[k], 0, sizeof(float) * (size_t)count[k]);
            continue;
        }
        double denom = fmax(1.0 - (double)t[k], (double)t_eps);
        /* d/dx [(x - y)^2 / w^2 / n] = 2 (x - y) / (w^2 n) */
        float scale = (float)(2.0 * dloss / (denom * denom * (double)n));
        for (long i = 0; i < count[k]; i++) dx_pred[k][i] = scale * (x_pred[k][i] - targets[k][i]);
    }
}
