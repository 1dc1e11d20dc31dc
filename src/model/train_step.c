/* A training step: the graph's recorded forward, the losses (SPEC sections 5,
 * 9), and their gradients fed to the graph's backward.
 *
 * The LM head runs only on the rows that carry a label (SPEC 5: the shifted
 * CE reads row i iff labels[i+1] != -100; the other rows get no gradient from
 * it anyway): logits row r is the r-th such row, and the compact labels keep
 * the shifted layout the loss expects (labels[0] = -100, labels[r+1] = the
 * label of logits row r, L = rows + 1). */
#include "model/train_step.h"
#include "model/graph.h"

#include <string.h>

#define MAX_IMAGES 64

typedef struct {
    tuna_workspace *ws;
    const tuna_train_example *ex;
    const tuna_config *c;
    tuna_graph graph;
    int L, K, out;
    int *ce_rows, ce_count;
    int32_t *ce_labels;
    float *logits, *head_out; /* [ce_count + 1, V], [L, out] */
    float *x_pred[MAX_IMAGES];
    long count[MAX_IMAGES];
} step_state;

static tuna_status select_label_rows(step_state *st, tuna_error *err) {
    const int32_t *labels = st->ex->labels;
    void *rows, *compact;
    TUNA_TRY(tuna_workspace_alloc(st->ws, sizeof(int) * (size_t)st->L, 0, &rows, err));
    TUNA_TRY(tuna_workspace_alloc(st->ws, sizeof(int32_t) * ((size_t)st->L + 1), 0, &compact, err));
    st->ce_rows = rows;
    st->ce_labels = compact;
    st->ce_labels[0] = -100;
    for (int i = 0; i + 1 < st->L; i++) {
        if (labels[i + 1] == -100) continue;
        st->ce_rows[st->ce_count] = i;
        st->ce_labels[++st->ce_count] = labels[i + 1];
    }
    return tuna_workspace_floats(st->ws, (int64_t)(st->ce_count + 1) * st->c->vocab_size, 1, &st->logits, err);
}

static int flow_count(const step_state *st) {
    int n = 0;
    for (int k = 0; st->ex->flow_images && st->ex->targets && k < st->K; k++) n += st->ex->flow_images[k] != 0;
    return n;
}

/* x_pred of every image from the head rows after its t slot (buffers of the
 * workspace where the caller gave none). */
static tuna_status predictions(step_state *st, float *const *given, tuna_error *err) {
    const tuna_sequence *seq = st->ex->sequence;
    int C = st->c->image_channels;
    for (int k = 0; k < st->K; k++) {
        const tuna_image_segment *sg = &seq->segments[k];
        st->count[k] = (long)C * sg->height * sg->width;
        st->x_pred[k] = given && given[k] ? given[k] : NULL;
        if (!st->x_pred[k]) TUNA_TRY(tuna_workspace_floats(st->ws, st->count[k], 0, &st->x_pred[k], err));
        st->graph.ops->unpatchify(st->graph.be, st->x_pred[k], st->head_out + (size_t)(sg->offset + 1) * st->out, C,
                                  sg->height, sg->width);
    }
    return TUNA_OK;
}

static tuna_status compute_losses(step_state *st, tuna_losses *out, tuna_error *err) {
    const tuna_graph *g = &st->graph;
    const tuna_train_example *ex = st->ex;
    memset(out, 0, sizeof *out);
    if (st->logits) {
        int invalid = 0;
        out->loss_ce = g->ops->cross_entropy(g->be, st->logits, st->ce_labels, st->ce_count + 1, st->c->vocab_size,
                                             &out->ce_tokens, &invalid);
        if (invalid) return tuna_fail(err, TUNA_ERR_INVALID, "%d labels lie outside the vocabulary", invalid);
    }
    if (flow_count(st)) {
        out->loss_flow = g->ops->flow_loss(g->be, (const float *const *)st->x_pred, ex->targets, ex->sequence->t,
                                           ex->flow_images, st->count, st->K, (float)st->c->t_eps);
        for (int k = 0; k < st->K; k++) out->flow_elements += ex->flow_images[k] ? st->count[k] : 0;
    }
    out->loss = out->loss_ce + out->loss_flow;
    return TUNA_OK;
}

/* d(scale * loss)/d logits and d/d head_out, then the graph's backward. */
static tuna_status backward(step_state *st, const tuna_model *gradients, float loss_scale, tuna_error *err) {
    tuna_graph *g = &st->graph;
    const tuna_train_example *ex = st->ex;
    float *dlogits = NULL, *dhead_out = NULL;
    if (st->logits && st->ce_count > 0) {
        TUNA_TRY(tuna_workspace_floats(st->ws, (int64_t)(st->ce_count + 1) * st->c->vocab_size, 0, &dlogits, err));
        g->ops->cross_entropy_backward(g->be, st->logits, st->ce_labels, st->ce_count + 1, st->c->vocab_size,
                                       loss_scale, dlogits);
    }
    if (flow_count(st)) {
        float *dx_pred[MAX_IMAGES];
        for (int k = 0; k < st->K; k++) TUNA_TRY(tuna_workspace_floats(st->ws, st->count[k], 0, &dx_pred[k], err));
        g->ops->flow_loss_backward(g->be, (const float *const *)st->x_pred, ex->targets, ex->sequence->t,
                                   ex->flow_images, st->count, st->K, (float)st->c->t_eps, loss_scale, dx_pred);
        TUNA_TRY(tuna_workspace_floats(st->ws, (int64_t)st->L * st->out, 1, &dhead_out, err)); /* text and t rows: 0 */
        for (int k = 0; k < st->K; k++) {
            const tuna_image_segment *sg = &ex->sequence->segments[k];
            g->ops->patchify(g->be, dhead_out + (size_t)(sg->offset + 1) * st->out, dx_pred[k], st->c->image_channels,
                             sg->height, sg->width);
        }
    }
    const float *dl[1] = {dlogits}, *dh[1] = {dhead_out};
    return tuna_graph_backward(g, gradients, dl, dh, err);
}

static tuna_status step(step_state *st, const tuna_model *model, const tuna_model *gradients, float loss_scale,
                        float *const *x_pred, const tuna_backend *be, tuna_workspace *ws, tuna_losses *losses,
                        tuna_error *err) {
    const tuna_sequence *seq = st->ex->sequence;
    if (seq->image_count > MAX_IMAGES) return tuna_fail(err, TUNA_ERR_LIMIT, "at most %d images per sequence", MAX_IMAGES);
    if (st->ex->labels) TUNA_TRY(select_label_rows(st, err));
    if (st->K) TUNA_TRY(tuna_workspace_floats(ws, (int64_t)st->L * st->out, 0, &st->head_out, err));
    tuna_forward_request rq = {.sequence = seq, .row_begin = 0, .row_end = st->L, .run_head = st->K > 0,
                               .logits_mode = st->logits ? TUNA_LOGITS_ROWS : TUNA_LOGITS_NONE,
                               .logit_rows = st->ce_rows, .logit_row_count = st->ce_count, .logits = st->logits,
                               .head_out = st->head_out};
    TUNA_TRY(tuna_graph_forward(&st->graph, model, &rq, 1, be, ws, gradients != NULL, err));
    if (st->K) TUNA_TRY(predictions(st, x_pred, err));
    TUNA_TRY(compute_losses(st, losses, err));
    return gradients ? backward(st, gradients, loss_scale, err) : TUNA_OK;
}

tuna_status tuna_model_loss_and_gradients(const tuna_model *model, const tuna_model *gradients,
                                          const tuna_train_example *ex, float loss_scale, float *const *x_pred,
                                          const tuna_backend *be, tuna_workspace *ws, tuna_losses *losses,
                                          tuna_error *err) {
    step_state st;
    memset(&st, 0, sizeof st);
    st.ex = ex;
    st.c = &model->config;
    st.L = ex->sequence->length;
    st.K = ex->sequence->image_count;
    st.out = st.c->patch_size * st.c->patch_size * st.c->image_channels;
    tuna_workspace own;
    if (!ws) tuna_workspace_init(&own, be);
    tuna_workspace *use = ws ? ws : &own;
    tuna_workspace_reset(use);
    st.ws = use;
    tuna_status s = step(&st, model, gradients, loss_scale, x_pred, be, use, losses, err);
    if (!ws) tuna_workspace_free(&own);
    return s;
}
