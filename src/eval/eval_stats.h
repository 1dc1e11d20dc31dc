/* Statistics of `tuna eval` (docs/eval.md): the Frechet distance between two
 * sets of feature vectors, the symmetric eigen-decomposition it needs, and the
 * answer normalisation of exact-match scoring. */
#ifndef TUNA_EVAL_EVAL_STATS_H
#define TUNA_EVAL_EVAL_STATS_H

#include "core/status.h"

#include <stddef.h>

/* Eigenvalues (ascending, into w[n]) and eigenvectors (columns of v[n*n], may be
 * NULL) of the symmetric n x n matrix a (row-major; destroyed), by cyclic Jacobi
 * rotations in double precision. n <= 4096. */
tuna_status tuna_symmetric_eigen(double *a, int n, double *w, double *v, tuna_error *err);

/* Frechet distance between the Gaussians fitted to two sets of d-dimensional
 * features (rows of a [na, d] and b [nb, d]; na, nb >= 2):
 *   FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)
 * with unbiased covariances (n - 1, as numpy.cov in the FID reference code).
 * The matrix square roots come from symmetric eigen-decompositions (negative
 * eigenvalues of round-off are clamped to 0), so FD(a, a) = 0 up to round-off. */
tuna_status tuna_frechet_distance(const float *a, int na, const float *b, int nb, int d, double *fd,
                                  tuna_error *err);

/* Exact-match normalisation: lower case (ASCII), every character that is not a
 * letter or digit becomes a space, runs of spaces collapse to one, no leading or
 * trailing space, and a leading article ("a ", "an ", "the ") is dropped.
 * Writes at most cap bytes (NUL included). */
void tuna_answer_normalize(const char *in, char *out, size_t cap);
/* 1 if the normalised strings are equal. */
int tuna_answer_matches(const char *got, const char *want);

#endif
