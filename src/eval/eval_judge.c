/* Judges of `tuna eval`: scene detector, text reader, item colour and the
 * dispatch over a task's expectation. The Fashion-MNIST classifier is in
 * eval_fashion.c. See eval_judge.h and docs/eval.md. */
#include "eval/eval_judge.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tools/make_dataset.py PALETTE, BACKGROUND, SHAPES, FASHION */
const char *const tuna_judge_colour_names[TUNA_JUDGE_COLOURS] = {"red",    "green",  "blue",  "yellow",
                                                                 "purple", "orange", "white", "black"};
const uint8_t tuna_judge_palette[TUNA_JUDGE_COLOURS][3] = {
    {220, 40, 40}, {40, 170, 60}, {40, 80, 220}, {240, 210, 40},
    {150, 60, 190}, {250, 140, 20}, {245, 245, 245}, {20, 20, 20}};
const uint8_t tuna_judge_background[3] = {128, 128, 128};
const char *const tuna_judge_shape_names[TUNA_JUDGE_SHAPES] = {"circle", "square", "triangle", "star"};
const char *const tuna_fashion_class_names[TUNA_FASHION_CLASSES] = {
    "t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"};

static int name_index(const char *const *names, int n, const char *name) {
    if (!name) return -1;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return i;
    return -1;
}

int tuna_judge_colour_index(const char *name) { return name_index(tuna_judge_colour_names, TUNA_JUDGE_COLOURS, name); }
int tuna_judge_shape_index(const char *name) { return name_index(tuna_judge_shape_names, TUNA_JUDGE_SHAPES, name); }
int tuna_fashion_class_index(const char *name) {
    return name_index(tuna_fashion_class_names, TUNA_FASHION_CLASSES, name);
}

static const char *const relation_names[4] = {"left", "right", "above", "below"};

const char *tuna_judge_relation(float ax, float ay, float bx, float by) {
    float dx = ax - bx, dy = ay - by;
    if (fabsf(dx) >= fabsf(dy)) return dx < 0 ? "left" : "right";
    return dy < 0 ? "above" : "below";
}

int tuna_judge_relation_index(const char *name) { return name_index(relation_names, 4, name); }

void tuna_expect_init(tuna_expect *e) {
    memset(e, 0, sizeof *e);
    e->relation = -1;
    e->text_colour = -1;
    e->fashion_class = -1;
    e->colour = -1;
}

/* ---- pixels to labels ------------------------------------------------------ */
#define LABEL_BACKGROUND TUNA_JUDGE_COLOURS

/* Nearest of the palette and the background grey (squared RGB distance). */
static int nearest_label(const uint8_t *px) {
    int best = LABEL_BACKGROUND;
    long best_d = 0;
    for (int c = 0; c <= TUNA_JUDGE_COLOURS; c++) {
        const uint8_t *q = c < TUNA_JUDGE_COLOURS ? tuna_judge_palette[c] : tuna_judge_background;
        long d = 0;
        for (int k = 0; k < 3; k++) d += (long)(px[k] - q[k]) * (px[k] - q[k]);
        if (c == 0 || d < best_d) best = c, best_d = d;
    }
    return best;
}

static uint8_t *label_image(const tuna_image *img) {
    size_t n = (size_t)img->width * img->height;
    uint8_t *labels = malloc(n ? n : 1);
    if (labels)
        for (size_t i = 0; i < n; i++) labels[i] = (uint8_t)nearest_label(img->rgb + 3 * i);
    return labels;
}

/* ---- shapes ------------------------------------------------------------------ */
/* The 5-point star of make_dataset.star_polygon (outer radius 1, inner 0.5, tip up),
 * and its bounding box, which the shape's box maps onto. */
#define STAR_INNER 0.5
static void star_polygon(double px[10], double py[10], double lo[2], double hi[2]) {
    lo[0] = lo[1] = 1e9;
    hi[0] = hi[1] = -1e9;
    for (int k = 0; k < 10; k++) {
        double r = k % 2 == 0 ? 1.0 : STAR_INNER, a = -M_PI / 2 + k * M_PI / 5;
        px[k] = r * cos(a);
        py[k] = r * sin(a);
        lo[0] = fmin(lo[0], px[k]), lo[1] = fmin(lo[1], py[k]);
        hi[0] = fmax(hi[0], px[k]), hi[1] = fmax(hi[1], py[k]);
    }
}

static int inside_polygon(double x, double y, const double *px, const double *py, int n) {
    int in = 0;
    for (int i = 0; i < n; i++) {
        double x0 = px[i], y0 = py[i], x1 = px[(i + 1) % n], y1 = py[(i + 1) % n];
        if ((y0 > y) != (y1 > y)) {
            double xint = x0 + (y - y0) * (x1 - x0) / (y1 != y0 ? y1 - y0 : 1e-12);
            if (x < xint) in = !in;
        }
    }
    return in;
}

int tuna_judge_shape_inside(int shape, double u, double v) {
    switch (shape) {
    case 0: return u * u + v * v <= 1; /* circle */
    case 1: return fabs(u) <= 1 && fabs(v) <= 1;
    case 2: return v <= 1 && fabs(u) <= (v + 1) / 2; /* apex up */
    case 3: {
        double px[10], py[10], lo[2], hi[2];
        star_polygon(px, py, lo, hi);
        return inside_polygon(lo[0] + (u + 1) / 2 * (hi[0] - lo[0]), lo[1] + (v + 1) / 2 * (hi[1] - lo[1]), px, py,
                              10);
    }
    default: return 0;
    }
}

/* Area of the convex hull of the pixel squares of a mask (w x h): Andrew's
 * monotone chain over the outer corners of each row's first and last pixel. */
static double cross3(const double *o, const double *a, const double *b) {
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

static double hull_area(const uint8_t *mask, int w, int h) {
    double (*pts)[2] = malloc(sizeof *pts * 4 * (size_t)h), (*hull)[2] = malloc(sizeof *hull * 8 * (size_t)h + 16);
    if (!pts || !hull) {
        free(pts), free(hull);
        return 0;
    }
    int n = 0;
    for (int y = 0; y < h; y++) { /* rows in order, x ascending within a row: sorted by (y, x) */
        int first = -1, last = -1;
        for (int x = 0; x < w; x++)
            if (mask[y * w + x]) last = x, first = first < 0 ? x : first;
        if (first < 0) continue;
        double row[4][2] = {{first, y}, {last + 1, y}, {first, y + 1}, {last + 1, y + 1}};
        memcpy(pts[n], row, sizeof row);
        n += 4;
    }
    /* sort by (y, x): rows come in order, but corners at y+1 of row y precede row y+1's */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (pts[j][1] < pts[j - 1][1] || (pts[j][1] == pts[j - 1][1] && pts[j][0] < pts[j - 1][0]));
             j--) {
            double t0 = pts[j][0], t1 = pts[j][1];
            pts[j][0] = pts[j - 1][0], pts[j][1] = pts[j - 1][1], pts[j - 1][0] = t0, pts[j - 1][1] = t1;
        }
    int k = 0;
    for (int i = 0; i < n; i++) {
        while (k >= 2 && cross3(hull[k - 2], hull[k - 1], pts[i]) <= 0) k--;
        hull[k][0] = pts[i][0], hull[k][1] = pts[i][1], k++;
    }
    for (int i = n - 2, lower = k + 1; i >= 0; i--) {
        while (k >= lower && cross3(hull[k - 2], hull[k - 1], pts[i]) <= 0) k--;
        hull[k][0] = pts[i][0], hull[k][1] = pts[i][1], k++;
    }
    double area = 0;
    for (int i = 0; i + 1 < k; i++) area += hull[i][0] * hull[i + 1][1] - hull[i + 1][0] * hull[i][1];
    free(pts), free(hull);
    return fabs(area) / 2;
}

/* Solidity (area / convex hull area) below this is a star: rendered stars of 9-13
 * pixels measure 0.62-0.78, circles, squares and triangles 0.84-1 (tools/make_dataset.py
 * shapes at random sub-pixel offsets). */
#define STAR_SOLIDITY 0.81

/* A star by its solidity; otherwise the IoU of the component (mask over its
 * bounding box) with each convex canonical shape drawn into that box, the best
 * one winning. *best_iou gets the solidity for a star. */
static int classify_shape(const uint8_t *mask, int w, int h, float *best_iou) {
    long area = 0;
    for (int i = 0; i < w * h; i++) area += mask[i];
    double hull = hull_area(mask, w, h), solidity = hull > 0 ? area / hull : 1;
    if (solidity < STAR_SOLIDITY) {
        *best_iou = (float)solidity;
        return 3;
    }
    int best = 0;
    double best_score = -1;
    for (int s = 0; s < 3; s++) {
        long inter = 0, uni = 0;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double u = (x + 0.5) / w * 2 - 1, v = (y + 0.5) / h * 2 - 1;
                int t = tuna_judge_shape_inside(s, u, v), m = mask[y * w + x];
                inter += t && m;
                uni += t || m;
            }
        double score = uni ? (double)inter / uni : 0;
        if (score > best_score) best_score = score, best = s;
    }
    *best_iou = (float)best_score;
    return best;
}

/* ---- connected components -------------------------------------------------- */
static int min_object_area(const tuna_image *img) {
    /* 8 pixels at 32x32 (a shape is >= 9 pixels across), scaled with the area */
    long a = lround(8.0 * img->width * img->height / 1024.0);
    return a < 4 ? 4 : (int)a;
}

static int compare_area_desc(const void *a, const void *b) {
    const tuna_judge_object *x = a, *y = b;
    return (y->area > x->area) - (y->area < x->area);
}

tuna_status tuna_judge_detect(const tuna_image *img, tuna_judge_scene *scene, tuna_error *err) {
    memset(scene, 0, sizeof *scene);
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0)
        return tuna_fail(err, TUNA_ERR_INVALID, "judge: empty image");
    int W = img->width, H = img->height;
    size_t n = (size_t)W * H;
    uint8_t *labels = label_image(img);
    int *comp = malloc(sizeof(int) * n), *stack = malloc(sizeof(int) * n);
    uint8_t *mask = malloc(n);
    if (!labels || !comp || !stack || !mask) {
        free(labels), free(comp), free(stack), free(mask);
        return tuna_fail(err, TUNA_ERR_NOMEM, "judge: out of memory");
    }
    for (size_t i = 0; i < n; i++) comp[i] = -1;
    int min_area = min_object_area(img), ncomp = 0;
    tuna_judge_object found[4 * TUNA_JUDGE_MAX_OBJECTS];
    int nfound = 0;
    for (size_t start = 0; start < n; start++) {
        if (comp[start] >= 0 || labels[start] == LABEL_BACKGROUND) continue;
        /* flood fill (4-connected) of one colour */
        int label = labels[start], top = 0, area = 0, x0 = W, y0 = H, x1 = -1, y1 = -1, id = ncomp++;
        double sx = 0, sy = 0;
        stack[top++] = (int)start;
        comp[start] = id;
        while (top) {
            int p = stack[--top], x = p % W, y = p / W;
            area++, sx += x + 0.5, sy += y + 0.5;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
            const int nx[4] = {x - 1, x + 1, x, x}, ny[4] = {y, y, y - 1, y + 1};
            for (int k = 0; k < 4; k++) {
                if (nx[k] < 0 || ny[k] < 0 || nx[k] >= W || ny[k] >= H) continue;
                int q = ny[k] * W + nx[k];
                if (comp[q] < 0 && labels[q] == label) comp[q] = id, stack[top++] = q;
            }
        }
        if (area < min_area) continue;
        scene->components++;
        int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
        for (int y = 0; y < bh; y++)
            for (int x = 0; x < bw; x++) mask[y * bw + x] = comp[(y0 + y) * W + x0 + x] == id;
        tuna_judge_object o = {.colour = label, .x = (float)(sx / area), .y = (float)(sy / area), .area = area};
        o.shape = classify_shape(mask, bw, bh, &o.shape_iou);
        if (nfound < (int)(sizeof found / sizeof found[0])) found[nfound++] = o;
    }
    qsort(found, (size_t)nfound, sizeof found[0], compare_area_desc);
    scene->count = nfound < TUNA_JUDGE_MAX_OBJECTS ? nfound : TUNA_JUDGE_MAX_OBJECTS;
    memcpy(scene->objects, found, sizeof found[0] * (size_t)scene->count);
    free(labels), free(comp), free(stack), free(mask);
    return TUNA_OK;
}

/* ---- matching a scene against the expectation -------------------------------- */
/* Same multiset of (shape, colour); with positions, each expected object is paired
 * with the nearest unused detection of its kind and must lie within tolerance.
 * match[i] receives the detection paired with expected object i. */
static int scene_matches(const tuna_judge_scene *s, const tuna_expect *e, float tolerance, int *match) {
    if (s->count != e->object_count) return 0;
    int used[TUNA_JUDGE_MAX_OBJECTS] = {0};
    for (int i = 0; i < e->object_count; i++) {
        const tuna_expect_object *x = &e->objects[i];
        int best = -1;
        float best_d = 0;
        for (int k = 0; k < s->count; k++) {
            const tuna_judge_object *o = &s->objects[k];
            if (used[k] || o->shape != x->shape || o->colour != x->colour) continue;
            float d = x->has_position ? hypotf(o->x - x->x, o->y - x->y) : 0;
            if (best < 0 || d < best_d) best = k, best_d = d;
        }
        if (best < 0) return 0;
        if (tolerance > 0 && x->has_position && best_d > tolerance) return 0;
        used[best] = 1;
        match[i] = best;
    }
    return 1;
}

static int judge_scene(const tuna_image *img, const tuna_expect *e, float tolerance, int *ok, tuna_error *err) {
    tuna_judge_scene s;
    TUNA_TRY(tuna_judge_detect(img, &s, err));
    int match[TUNA_JUDGE_MAX_OBJECTS];
    *ok = scene_matches(&s, e, tolerance, match);
    if (*ok && e->relation >= 0 && e->rel_a < e->object_count && e->rel_b < e->object_count) {
        const tuna_judge_object *a = &s.objects[match[e->rel_a]], *b = &s.objects[match[e->rel_b]];
        *ok = strcmp(tuna_judge_relation(a->x, a->y, b->x, b->y), relation_names[e->relation]) == 0;
    }
    return TUNA_OK;
}

/* ---- text -------------------------------------------------------------------- */
tuna_status tuna_text_templates_load(const char *path, tuna_text_templates *t, tuna_error *err) {
    memset(t, 0, sizeof *t);
    tuna_safetensors st;
    TUNA_TRY(tuna_safetensors_open(path, &st, err));
    const tuna_tensor *m = tuna_safetensors_find(&st, "masks");
    const char *strings = tuna_safetensors_metadata_get(&st, "strings");
    tuna_status s = TUNA_OK;
    if (!m || m->dtype != TUNA_U8 || m->ndim != 3 || m->shape[1] != m->shape[2] || m->shape[0] < 1 ||
        m->shape[1] < 4 || m->shape[1] > 512 || !strings) {
        s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: want U8 masks [K, S, S] and metadata \"strings\"", path);
    } else {
        t->count = (int)m->shape[0];
        t->side = (int)m->shape[1];
        size_t bytes = (size_t)t->count * t->side * t->side;
        t->masks = malloc(bytes);
        t->strings = calloc((size_t)t->count, sizeof *t->strings);
        if (!t->masks || !t->strings) {
            s = tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
        } else {
            memcpy(t->masks, m->data, bytes);
            /* "strings": the K strings separated by '\n' */
            const char *p = strings;
            for (int k = 0; k < t->count && s == TUNA_OK; k++) {
                const char *end = strchr(p, '\n');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                if (len == 0 || len >= sizeof t->strings[0] || (!end && k + 1 < t->count))
                    s = tuna_fail(err, TUNA_ERR_FORMAT, "%s: metadata \"strings\" does not hold %d strings", path,
                                  t->count);
                else
                    memcpy(t->strings[k], p, len), p = end ? end + 1 : p + len;
            }
        }
    }
    tuna_safetensors_close(&st);
    if (s != TUNA_OK) tuna_text_templates_free(t);
    return s;
}

void tuna_text_templates_free(tuna_text_templates *t) {
    free(t->masks);
    free(t->strings);
    memset(t, 0, sizeof *t);
}

tuna_status tuna_judge_read_text(const tuna_text_templates *t, const tuna_image *img, const char **text,
                                 int *colour, tuna_error *err) {
    if (!t->count) return tuna_fail(err, TUNA_ERR_INVALID, "judge: no text templates");
    int S = t->side, W = img->width, H = img->height;
    uint8_t *labels = label_image(img), *fg = malloc((size_t)S * S);
    if (!labels || !fg) {
        free(labels), free(fg);
        return tuna_fail(err, TUNA_ERR_NOMEM, "out of memory");
    }
    int votes[TUNA_JUDGE_COLOURS] = {0};
    for (int i = 0; i < W * H; i++)
        if (labels[i] != LABEL_BACKGROUND) votes[labels[i]]++;
    /* the foreground, sampled (nearest) onto the templates' grid */
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int sx = (int)((x + 0.5) * W / S), sy = (int)((y + 0.5) * H / S);
            fg[y * S + x] = labels[sy * W + sx] != LABEL_BACKGROUND;
        }
    int best = 0;
    double best_iou = -1;
    for (int k = 0; k < t->count; k++) {
        const uint8_t *m = t->masks + (size_t)k * S * S;
        long inter = 0, uni = 0;
        for (int i = 0; i < S * S; i++) inter += m[i] && fg[i], uni += m[i] || fg[i];
        double iou = uni ? (double)inter / uni : 0;
        if (iou > best_iou) best_iou = iou, best = k;
    }
    int c = 0;
    for (int k = 1; k < TUNA_JUDGE_COLOURS; k++)
        if (votes[k] > votes[c]) c = k;
    *text = t->strings[best];
    *colour = c;
    free(labels), free(fg);
    return TUNA_OK;
}

/* ---- item colour ----------------------------------------------------------- */
int tuna_judge_item_colour(const tuna_image *img) {
    size_t n = (size_t)img->width * img->height;
    int top = 0;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) top = img->rgb[3 * i + k] > top ? img->rgb[3 * i + k] : top;
    double sum[3] = {0, 0, 0};
    long count = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img->rgb + 3 * i;
        int mx = p[0] > p[1] ? p[0] : p[1];
        mx = p[2] > mx ? p[2] : mx;
        if (top > 0 && 2 * mx >= top) sum[0] += p[0], sum[1] += p[1], sum[2] += p[2], count++;
    }
    if (!count) return tuna_judge_colour_index("black");
    double m = fmax(sum[0], fmax(sum[1], sum[2]));
    int best = 0;
    double best_d = 1e30;
    for (int c = 0; c < TUNA_JUDGE_COLOURS; c++) {
        const uint8_t *q = tuna_judge_palette[c];
        double qm = fmax(q[0], fmax(q[1], q[2])), d = 0;
        if (strcmp(tuna_judge_colour_names[c], "black") == 0) continue; /* scaled black is white */
        for (int k = 0; k < 3; k++) d += (sum[k] / m - q[k] / qm) * (sum[k] / m - q[k] / qm);
        if (d < best_d) best_d = d, best = c;
    }
    return best;
}

/* ---- all judges ---------------------------------------------------------------- */
static int file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

tuna_status tuna_judges_load(const char *dir, tuna_judges *j, tuna_error *err) {
    memset(j, 0, sizeof *j);
    char path[4096];
    snprintf(path, sizeof path, "%s/fashion_mlp.safetensors", dir);
    if (file_exists(path)) {
        TUNA_TRY(tuna_fashion_mlp_load(path, &j->fashion, err));
        j->has_fashion = 1;
    }
    snprintf(path, sizeof path, "%s/text_templates.safetensors", dir);
    if (file_exists(path)) {
        tuna_status s = tuna_text_templates_load(path, &j->text, err);
        if (s != TUNA_OK) {
            tuna_judges_free(j);
            return s;
        }
        j->has_text = 1;
    }
    return TUNA_OK;
}

void tuna_judges_free(tuna_judges *j) {
    if (j->has_fashion) tuna_fashion_mlp_free(&j->fashion);
    if (j->has_text) tuna_text_templates_free(&j->text);
    memset(j, 0, sizeof *j);
}

tuna_status tuna_judge_image(const tuna_judges *j, const tuna_image *img, const tuna_expect *e,
                             float position_tolerance, int *ok, int *judged, tuna_error *err) {
    *ok = 0;
    *judged = 1;
    if (e->text[0]) {
        if (!j->has_text) return *judged = 0, TUNA_OK;
        const char *text;
        int colour;
        TUNA_TRY(tuna_judge_read_text(&j->text, img, &text, &colour, err));
        *ok = strcmp(text, e->text) == 0 && (e->text_colour < 0 || colour == e->text_colour);
        return TUNA_OK;
    }
    if (e->fashion_class >= 0) {
        if (!j->has_fashion) return *judged = 0, TUNA_OK;
        float x[TUNA_FASHION_INPUTS];
        TUNA_TRY(tuna_fashion_input(img, x, err));
        *ok = tuna_fashion_mlp_classify(&j->fashion, x, NULL) == e->fashion_class &&
              (e->colour < 0 || tuna_judge_item_colour(img) == e->colour);
        return TUNA_OK;
    }
    return judge_scene(img, e, position_tolerance, ok, err);
}
