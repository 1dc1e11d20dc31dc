/* Judges of `tuna eval` (docs/eval.md): independent of the model under test,
 * they say whether an image shows what a prompt asked for.
 *
 *  - scene detector: the synthetic scenes of tools/make_dataset.py are flat
 *    shapes in an 8-colour palette on grey. Each pixel takes the nearest of the
 *    9 colours; 4-connected components of one colour (smaller ones dropped) are
 *    objects; a component's shape is the canonical shape (circle, square,
 *    triangle, star, drawn into the component's bounding box with the dataset's
 *    own geometry) of highest IoU with it.
 *  - text reader: the foreground mask against the rendered masks of every
 *    string the dataset writes (models/judge/text_templates.safetensors).
 *  - Fashion-MNIST classifier: a 784-H-10 ReLU MLP trained here, in C, on the
 *    60k real training images (tuna_fashion_mlp_train); its hidden layer is the
 *    feature space of the Frechet distance (eval_stats.h).
 *
 * The palette, background and shape geometry mirror tools/make_dataset.py. */
#ifndef TUNA_EVAL_EVAL_JUDGE_H
#define TUNA_EVAL_EVAL_JUDGE_H

#include "core/status.h"
#include "io/image.h"

#include <stdint.h>

#define TUNA_JUDGE_COLOURS 8
#define TUNA_JUDGE_SHAPES 4
#define TUNA_JUDGE_MAX_OBJECTS 16
#define TUNA_FASHION_SIDE 28
#define TUNA_FASHION_INPUTS (TUNA_FASHION_SIDE * TUNA_FASHION_SIDE)
#define TUNA_FASHION_CLASSES 10

extern const char *const tuna_judge_colour_names[TUNA_JUDGE_COLOURS];
extern const uint8_t tuna_judge_palette[TUNA_JUDGE_COLOURS][3];
extern const uint8_t tuna_judge_background[3];
extern const char *const tuna_judge_shape_names[TUNA_JUDGE_SHAPES];
extern const char *const tuna_fashion_class_names[TUNA_FASHION_CLASSES];

/* Index of a name, or -1. */
int tuna_judge_colour_index(const char *name);
int tuna_judge_shape_index(const char *name);
int tuna_fashion_class_index(const char *name);

/* "left", "right", "above", "below": where a is relative to b (the axis of the
 * larger centre separation decides, as the dataset's captions). */
const char *tuna_judge_relation(float ax, float ay, float bx, float by);
int tuna_judge_relation_index(const char *name); /* 0..3 in that order, or -1 */

/* ---- scenes ---------------------------------------------------------------- */
typedef struct {
    int shape, colour;   /* indices */
    float x, y;          /* centroid, pixels (pixel centres at +0.5) */
    int area;
    float shape_iou;     /* IoU with the chosen canonical shape */
} tuna_judge_object;

typedef struct {
    tuna_judge_object objects[TUNA_JUDGE_MAX_OBJECTS];
    int count;           /* objects kept (the largest TUNA_JUDGE_MAX_OBJECTS) */
    int components;      /* every component of area >= the minimum, for diagnostics */
} tuna_judge_scene;

/* Detect the objects of a synthetic scene. */
tuna_status tuna_judge_detect(const tuna_image *img, tuna_judge_scene *scene, tuna_error *err);

/* 1 if the point (u, v) in [-1, 1]^2 (the shape's bounding box) is inside it. */
int tuna_judge_shape_inside(int shape, double u, double v);

/* ---- what a task expects --------------------------------------------------- */
typedef struct {
    int shape, colour;
    float x, y;
    int has_position;
} tuna_expect_object;

typedef struct {
    tuna_expect_object objects[TUNA_JUDGE_MAX_OBJECTS];
    int object_count;
    int relation;          /* -1: none; else objects[rel_a] is `relation` of objects[rel_b] */
    int rel_a, rel_b;
    char text[16];         /* "" : no text expected */
    int text_colour;       /* -1: any */
    int fashion_class;     /* -1: not a Fashion-MNIST item */
    int colour;            /* the item's colour, -1: any (grey items) */
} tuna_expect;

void tuna_expect_init(tuna_expect *e);

/* ---- text templates -------------------------------------------------------- */
typedef struct {
    int count, side;
    char (*strings)[16];
    uint8_t *masks;        /* count * side * side, 0/1 */
} tuna_text_templates;

tuna_status tuna_text_templates_load(const char *path, tuna_text_templates *t, tuna_error *err);
void tuna_text_templates_free(tuna_text_templates *t);
/* The best-matching string (IoU of foreground masks) and the text's colour. */
tuna_status tuna_judge_read_text(const tuna_text_templates *t, const tuna_image *img, const char **text,
                                 int *colour, tuna_error *err);

/* ---- Fashion-MNIST classifier ---------------------------------------------- */
typedef struct {
    int hidden;
    float *w1, *b1;        /* [hidden, 784], [hidden] */
    float *w2, *b2;        /* [10, hidden], [10] */
    double train_accuracy, test_accuracy; /* as recorded when trained (-1: unknown) */
} tuna_fashion_mlp;

tuna_status tuna_fashion_mlp_init(tuna_fashion_mlp *m, int hidden, uint64_t seed, tuna_error *err);
void tuna_fashion_mlp_free(tuna_fashion_mlp *m);
tuna_status tuna_fashion_mlp_load(const char *path, tuna_fashion_mlp *m, tuna_error *err);
tuna_status tuna_fashion_mlp_save(const char *path, const tuna_fashion_mlp *m, tuna_error *err);

/* The classifier's input from an image: the centred square where the dataset put
 * the 28x28 item (side round(S*28/32)), resized to 28x28 if needed, grey = max of
 * R, G, B, divided by the crop's maximum (recoloured items read like grey ones). */
tuna_status tuna_fashion_input(const tuna_image *img, float x[TUNA_FASHION_INPUTS], tuna_error *err);
/* The same normalisation of a raw 28x28 grey item. */
void tuna_fashion_input_gray(const uint8_t *gray, float x[TUNA_FASHION_INPUTS]);
/* Class of x; hidden (may be NULL) receives the ReLU features [m->hidden]. */
int tuna_fashion_mlp_classify(const tuna_fashion_mlp *m, const float *x, float *hidden);

typedef struct {
    int epochs, batch;
    float learning_rate;
    uint64_t seed;
    int verbose;
} tuna_fashion_train_params;

/* Adam on softmax cross-entropy over n grey 28x28 items (x: n*784 bytes). */
tuna_status tuna_fashion_mlp_train(tuna_fashion_mlp *m, const uint8_t *images, const uint8_t *labels, int n,
                                   const tuna_fashion_train_params *p, tuna_error *err);
double tuna_fashion_mlp_accuracy(const tuna_fashion_mlp *m, const uint8_t *images, const uint8_t *labels, int n);

/* An IDX file (gzip or plain: ubyte data, 1 to 3 dims) as in Fashion-MNIST. */
tuna_status tuna_idx_load(const char *path, uint8_t **data, int dims[3], int *ndims, tuna_error *err);

/* Colour of a Fashion-MNIST-like item: the mean of its bright pixels (max channel
 * >= half the image maximum) scaled to max 1, nearest palette colour scaled alike. */
int tuna_judge_item_colour(const tuna_image *img);

/* ---- everything together --------------------------------------------------- */
typedef struct {
    tuna_fashion_mlp fashion;
    int has_fashion;
    tuna_text_templates text;
    int has_text;
} tuna_judges;

/* dir/fashion_mlp.safetensors and dir/text_templates.safetensors; a missing file
 * leaves that judge out (its tasks are reported as unjudged). */
tuna_status tuna_judges_load(const char *dir, tuna_judges *j, tuna_error *err);
void tuna_judges_free(tuna_judges *j);

/* Does img satisfy e? position_tolerance > 0 also requires every expected
 * object with a position within that many pixels of its detection (edits).
 * *judged = 0 when no loaded judge can decide (e.g. no classifier). */
tuna_status tuna_judge_image(const tuna_judges *j, const tuna_image *img, const tuna_expect *e,
                             float position_tolerance, int *ok, int *judged, tuna_error *err);

#endif
