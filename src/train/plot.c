#include "train/plot.h"

#include "core/mapped_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- metrics.jsonl ---------------------------------------------------------- */

static double field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

tuna_status tuna_metrics_read(const char *path, tuna_metrics *m, tuna_error *err) {
    memset(m, 0, sizeof *m);
    char *text = NULL;
    size_t size = 0;
    TUNA_TRY(tuna_read_file(path, (size_t)1 << 32, &text, &size, err));
    int cap = 0;
    for (char *line = text; line < text + size;) {
        char *nl = memchr(line, '\n', (size_t)(text + size - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(text + size - line);
        cJSON *o = len ? cJSON_ParseWithLength(line, len) : NULL;
        if (cJSON_IsObject(o) && isfinite(field(o, "step"))) {
            if (m->count == cap) {
                cap = cap ? 2 * cap : 1024;
                double **arrays[4] = {&m->step, &m->loss, &m->ce, &m->flow};
                for (int a = 0; a < 4; a++) {
                    double *n = realloc(*arrays[a], (size_t)cap * sizeof *n);
                    if (!n) {
                        cJSON_Delete(o);
                        free(text);
                        tuna_metrics_free(m);
                        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory reading %s", path);
                    }
                    *arrays[a] = n;
                }
            }
            m->step[m->count] = field(o, "step");
            m->loss[m->count] = field(o, "loss");
            m->ce[m->count] = field(o, "ce");
            m->flow[m->count] = field(o, "flow");
            m->count++;
        }
        cJSON_Delete(o);
        line += len + 1;
    }
    free(text);
    if (m->count == 0) return tuna_fail(err, TUNA_ERR_FORMAT, "%s: no metrics lines", path);
    return TUNA_OK;
}

void tuna_metrics_free(tuna_metrics *m) {
    free(m->step);
    free(m->loss);
    free(m->ce);
    free(m->flow);
    memset(m, 0, sizeof *m);
}

/* ---- drawing ---------------------------------------------------------------- */

typedef struct {
    uint8_t r, g, b;
} rgb;

static void put(tuna_image *img, int x, int y, rgb c) {
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    uint8_t *p = img->rgb + ((size_t)y * img->width + x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void fill(tuna_image *img, int x0, int y0, int x1, int y1, rgb c) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(img, x, y, c);
}

/* Bresenham, 2 pixels thick. */
static void line(tuna_image *img, int x0, int y0, int x1, int y1, rgb c, int thick) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        put(img, x0, y0, c);
        if (thick) {
            put(img, x0 + 1, y0, c);
            put(img, x0, y0 + 1, c);
        }
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}

/* 5x7 glyphs, one byte per row, bit 4 = leftmost column. */
typedef struct {
    char ch;
    uint8_t rows[7];
} glyph;

static const glyph font[] = {
    {'0', {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}}, {'1', {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'2', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}}, {'3', {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}},
    {'4', {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}}, {'5', {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}},
    {'6', {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}}, {'7', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}}, {'9', {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}}, {'-', {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}}, {'e', {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}}, {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}}, {'C', {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}},
    {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}}, {'F', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}}, {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'P', {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}},
};

static void text(tuna_image *img, int x, int y, const char *s, rgb c) {
    for (; *s; s++, x += 6) {
        for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
            if (font[g].ch != *s) continue;
            for (int r = 0; r < 7; r++)
                for (int col = 0; col < 5; col++)
                    if (font[g].rows[r] & (0x10 >> col)) put(img, x + col, y + r, c);
        }
    }
}

static void number(char *buf, size_t n, double v) {
    snprintf(buf, n, "%.3g", v);
}

tuna_status tuna_plot_render(const tuna_metrics *m, const tuna_plot_options *opt, tuna_image *img, tuna_error *err) {
    int W = opt && opt->width > 0 ? opt->width : 900, H = opt && opt->height > 0 ? opt->height : 540;
    double smooth = opt ? opt->smooth : 0;
    if (W < 200 || H < 150 || W > 8000 || H > 8000) return tuna_fail(err, TUNA_ERR_INVALID, "plot size %dx%d", W, H);
    if (smooth < 0 || smooth >= 1) return tuna_fail(err, TUNA_ERR_INVALID, "smoothing must be in [0, 1)");
    TUNA_TRY(tuna_image_alloc(img, W, H, err));
    memset(img->rgb, 255, (size_t)W * H * 3);
    const double *curves[3] = {m->loss, m->ce, m->flow};
    const rgb colors[3] = {{31, 90, 200}, {210, 40, 40}, {30, 150, 60}};
    const char *names[3] = {"LOSS", "CE", "FLOW"};
    /* smoothed copies */
    double *sm[3] = {0};
    for (int c = 0; c < 3; c++) {
        sm[c] = malloc((size_t)(m->count ? m->count : 1) * sizeof(double));
        if (!sm[c]) {
            for (int k = 0; k < c; k++) free(sm[k]);
            tuna_image_free(img);
            return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        }
        double acc = NAN;
        for (int i = 0; i < m->count; i++) {
            double v = curves[c][i];
            if (isfinite(v)) acc = isfinite(acc) ? smooth * acc + (1 - smooth) * v : v;
            sm[c][i] = isfinite(v) ? acc : NAN;
        }
    }
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < m->count; i++) {
        if (m->step[i] < x0) x0 = m->step[i];
        if (m->step[i] > x1) x1 = m->step[i];
        for (int c = 0; c < 3; c++) {
            double v = sm[c][i];
            if (!isfinite(v)) continue;
            if (v < y0) y0 = v;
            if (v > y1) y1 = v;
        }
    }
    if (!isfinite(y0)) y0 = 0, y1 = 1;
    if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
    double pad = 0.05 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
    if (x1 <= x0) x1 = x0 + 1;
    const int L = 70, R = W - 20, T = 20, B = H - 40;
    const rgb black = {0, 0, 0}, grid = {225, 225, 225};
    char buf[32];
    for (int k = 0; k <= 5; k++) {
        int y = B - (int)lround((double)k / 5 * (B - T));
        line(img, L, y, R, y, grid, 0);
        number(buf, sizeof buf, y0 + (y1 - y0) * k / 5);
        text(img, L - 6 - 6 * (int)strlen(buf), y - 3, buf, black);
        int x = L + (int)lround((double)k / 5 * (R - L));
        line(img, x, T, x, B, grid, 0);
        number(buf, sizeof buf, round(x0 + (x1 - x0) * k / 5));
        text(img, x - 3 * (int)strlen(buf), B + 8, buf, black);
    }
    line(img, L, B, R, B, black, 0);
    line(img, L, T, L, B, black, 0);
    for (int c = 0; c < 3; c++) {
        int have = 0, px = 0, py = 0;
        for (int i = 0; i < m->count; i++) {
            double v = sm[c][i];
            if (!isfinite(v)) {
                have = 0;
                continue;
            }
            int x = L + (int)lround((m->step[i] - x0) / (x1 - x0) * (R - L));
            int y = B - (int)lround((v - y0) / (y1 - y0) * (B - T));
            if (have) line(img, px, py, x, y, colors[c], 1);
            else put(img, x, y, colors[c]);
            px = x, py = y, have = 1;
        }
    }
    /* legend: coloured boxes with names, top right */
    for (int c = 0; c < 3; c++) {
        int y = T + 8 + 18 * c, x = R - 80;
        fill(img, x - 4, y - 4, R - 8, y + 14, (rgb){255, 255, 255});
        fill(img, x, y, x + 11, y + 11, colors[c]);
        text(img, x + 18, y + 2, names[c], black);
    }
    text(img, R - 20, B + 24, "STEP", black);
    for (int c = 0; c < 3; c++) free(sm[c]);
    return TUNA_OK;
}
