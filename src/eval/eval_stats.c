/* Frechet distance, symmetric eigen-decomposition, answer normalisation.
 * See eval_stats.h. */
#include "eval/eval_stats.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Cyclic Jacobi: rotate away every off-diagonal element in turn until the
 * off-diagonal mass is negligible. The plane rotation for (p, q) uses
 *   theta = (a_qq - a_pp) / (2 a_pq),  t = sign(theta) / (|theta| + sqrt(theta^2 + 1)),
 *   c = 1 / sqrt(t^2 + 1),  s = t c   (Golub & Van Loan, Algorithm 8.4.2). */
tuna_status tuna_symmetric_eigen(double *a, int n, double *w, double *v, tuna_error *err) {
    if (n < 1 || n > 4096) return tuna_fail(err, TUNA_ERR_INVALID, "eigen: size %d", n);
    if (v) {
        memset(v, 0, sizeof(double) * (size_t)n * n);
        for (int i = 0; i < n; i++) v[(size_t)i * n + i] = 1;
    }
    double total = 0;
    for (long i = 0; i < (long)n * n; i++) total += a[i] * a[i];
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[(size_t)p * n + q] * a[(size_t)p * n + q];
        if (off <= 1e-30 * total || off == 0) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[(size_t)p * n + q];
                if (apq == 0) continue;
                double theta = (a[(size_t)q * n + q] - a[(size_t)p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = c * akp - s * akq;
                    a[(size_t)k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = c * apk - s * aqk;
                    a[(size_t)q * n + k] = s * apk + c * aqk;
                }
                if (v)
                    for (int k = 0; k < n; k++) {
                        double vkp = v[(size_t)k * n + p], vkq = v[(size_t)k * n + q];
                        v[(size_t)k * n + p] = c * vkp - s * vkq;
                        v[(size_t)k * n + q] = s * vkp + c * vkq;
                    }
            }
    }
    for (int i = 0; i < n; i++) w[i] = a[(size_t)i * n + i];
    /* ascending order (selection sort; n is small), eigenvectors alongside */
    for (int i = 0; i < n; i++) {
        int m = i;
        for (int j = i + 1; j < n; j++)
            if (w[j] < w[m]) m = j;
        if (m == i) continue;
        double t = w[i];
        w[i] = w[m], w[m] = t;
        if (v)
            for (int k = 0; k < n; k++) {
                t = v[(size_t)k * n + i];
                v[(size_t)k * n + i] = v[(size_t)k * n + m], v[(size_t)k * n + m] = t;
            }
    }
    return TUNA_OK;
}

static void mean_cov(const float *x, int n, int d, double *mu, double *cov) {
    memset(mu, 0, sizeof(double) * d);
    memset(cov, 0, sizeof(double) * (size_t)d * d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += x[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mu[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            double xj = x[(size_t)i * d + j] - mu[j];
            for (int k = j; k < d; k++) cov[(size_t)j * d + k] += xj * (x[(size_t)i * d + k] - mu[k]);
        }
    for (int j = 0; j < d; j++)
        for (int k = j; k < d; k++) cov[(size_t)k * d + j] = cov[(size_t)j * d + k] /= (n - 1);
}

tuna_status tuna_frechet_distance(const float *a, int na, const float *b, int nb, int d, double *fd,
                                  tuna_error *err) {
    if (na < 2 || nb < 2 || d < 1 || d > 4096)
        return tuna_fail(err, TUNA_ERR_INVALID, "Frechet distance needs >= 2 vectors a side (got %d and %d)", na, nb);
    size_t dd = (size_t)d * d;
    double *mua = malloc(sizeof(double) * d), *mub = malloc(sizeof(double) * d), *w = malloc(sizeof(double) * d);
    double *sa = malloc(sizeof(double) * dd), *sb = malloc(sizeof(double) * dd), *v = malloc(sizeof(double) * dd);
    double *root = malloc(sizeof(double) * dd), *tmp = malloc(sizeof(double) * dd);
    tuna_status s = TUNA_OK;
    if (!mua || !mub || !w || !sa || !sb || !v || !root || !tmp) {
        s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        goto done;
    }
    mean_cov(a, na, d, mua, sa);
    mean_cov(b, nb, d, mub, sb);
    double dist = 0, trace = 0;
    for (int j = 0; j < d; j++) dist += (mua[j] - mub[j]) * (mua[j] - mub[j]);
    for (int j = 0; j < d; j++) trace += sa[(size_t)j * d + j] + sb[(size_t)j * d + j];
    /* root = S_a^1/2 = V diag(sqrt(max(w, 0))) V^T */
    memcpy(tmp, sa, sizeof(double) * dd);
    if ((s = tuna_symmetric_eigen(tmp, d, w, v, err)) != TUNA_OK) goto done;
    for (int i = 0; i < d; i++)
        for (int k = 0; k < d; k++) {
            double acc = 0;
            for (int j = 0; j < d; j++) acc += v[(size_t)i * d + j] * sqrt(fmax(w[j], 0)) * v[(size_t)k * d + j];
            root[(size_t)i * d + k] = acc;
        }
    /* M = root S_b root (symmetric PSD); tr(M^1/2) = sum sqrt(eigenvalues) */
    for (int i = 0; i < d; i++)
        for (int k = 0; k < d; k++) {
            double acc = 0;
            for (int j = 0; j < d; j++) acc += root[(size_t)i * d + j] * sb[(size_t)j * d + k];
            tmp[(size_t)i * d + k] = acc;
        }
    for (int i = 0; i < d; i++)
        for (int k = 0; k < d; k++) {
            double acc = 0;
            for (int j = 0; j < d; j++) acc += tmp[(size_t)i * d + j] * root[(size_t)j * d + k];
            sa[(size_t)i * d + k] = acc;
        }
    for (int i = 0; i < d; i++) /* symmetrise the round-off */
        for (int k = i + 1; k < d; k++)
            sa[(size_t)i * d + k] = sa[(size_t)k * d + i] = 0.5 * (sa[(size_t)i * d + k] + sa[(size_t)k * d + i]);
    if ((s = tuna_symmetric_eigen(sa, d, w, NULL, err)) != TUNA_OK) goto done;
    double cross = 0;
    for (int j = 0; j < d; j++) cross += sqrt(fmax(w[j], 0));
    *fd = fmax(dist + trace - 2 * cross, 0);
done:
    free(mua), free(mub), free(w), free(sa), free(sb), free(v), free(root), free(tmp);
    return s;
}

void tuna_answer_normalize(const char *in, char *out, size_t cap) {
    if (!cap) return;
    size_t n = 0;
    int pending_space = 0;
    for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p; p++) {
        /* bytes >= 0x80 (UTF-8) are kept as they are */
        int keep = isalnum(*p) || *p >= 0x80;
        if (!keep) {
            pending_space = n > 0;
            continue;
        }
        if (pending_space && n + 1 < cap) out[n++] = ' ';
        pending_space = 0;
        if (n + 1 < cap) out[n++] = (char)(*p < 0x80 ? tolower(*p) : *p);
    }
    out[n] = '\0';
    static const char *const articles[] = {"a ", "an ", "the "};
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(articles[i]);
        if (strncmp(out, articles[i], k) == 0 && out[k]) {
            memmove(out, out + k, strlen(out + k) + 1);
            break;
        }
    }
}

int tuna_answer_matches(const char *got, const char *want) {
    char a[1024], b[1024];
    tuna_answer_normalize(got, a, sizeof a);
    tuna_answer_normalize(want, b, sizeof b);
    return strcmp(a, b) == 0;
}
