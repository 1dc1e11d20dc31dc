/* Small vector helpers used by the model graph. */
#include "ops/ops.h"

#include <string.h>

void tuna_vec_add(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
void tuna_vec_acc(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}
void tuna_vec_axpy(float *y, float alpha, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}
void tuna_vec_scale(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}
void tuna_vec_mul(float *y, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}
void tuna_vec_copy(float *y, const float *x, int64_t n) {
    if (n > 0 && y != x) memmove(y, x, (size_t)n * sizeof(float));
}
void tuna_vec_zero(float *y, int64_t n) {
    if (n > 0) memset(y, 0, (size_t)n * sizeof(float));
}
void tuna_add_bias_rows(float *y, const float *bias, int64_t rows, int64_t dim) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < dim; i++) y[r * dim + i] += bias[i];
}
