/* `tuna quantize` end to end on the bundled model: the GGUF it writes is a
 * complete model (config and tokenizer inside) loading as a directory and as a
 * file, the tensor types follow the rules (fallbacks reported with their row
 * length), and the quantised models' next-token distributions stay close to
 * the bf16 model's (KL divergence and same top token over held-out questions),
 * including a decode step on the KV cache (the integer GEMV path). Runs the
 * `tuna` binary of the same build directory (BUILD/tests/../tuna). */
#include "test.h"

#include "core/tensor.h"
#include "infer/prepare.h"
#include "infer/understand.h"
#include "io/checkpoint.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "ops/backend.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char tuna_bin[4200], work[64];

static int run_quantize(const char *type, const char *out, char *report, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s quantize -m models/tuna2-small -o %s --type %s --quiet 2>&1", tuna_bin, out, type);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(report, 1, cap - 1, p);
    report[n] = '\0';
    return pclose(p);
}

static double kld_row(const float *a, const float *b, int V, int *same) {
    double ma = -INFINITY, mb = -INFINITY, za = 0, zb = 0, k = 0;
    int ia = 0, ib = 0;
    for (int v = 0; v < V; v++) {
        if (a[v] > ma) ma = a[v], ia = v;
        if (b[v] > mb) mb = b[v], ib = v;
    }
    for (int v = 0; v < V; v++) za += exp(a[v] - ma), zb += exp(b[v] - mb);
    for (int v = 0; v < V; v++) {
        double la = a[v] - ma - log(za), lb = b[v] - mb - log(zb);
        k += exp(la) * (la - lb);
    }
    *same = ia == ib;
    return k;
}

/* Teacher-forced logits of chat sequences (question + answer, no image): the
 * quantised model against the reference. And the quantised model against
 * itself: row L-2 computed as a one-token decode step on a KV cache (decode
 * rows take the integer GEMV over 8-bit x) against the same row of the
 * whole-sequence forward, forced onto the dequantised-f32 GEMM (TUNA_QMM). */
static void compare(const tuna_model *ref, const tuna_model *q, const tuna_tokenizer *tok, double *kld, double *top1,
                    double *decode_kld) {
    static const char *qa[][2] = {{"What colour is the square?", "red"},   {"How many circles are there?", "3"},
                                  {"Where is the triangle?", "top left"}, {"What is this?", "a shirt"},
                                  {"Is there a star?", "no"},              {"What shape is green?", "circle"}};
    int V = ref->config.vocab_size, positions = 0, same_sum = 0;
    double sum = 0;
    *decode_kld = 0;
    tuna_threads pool;
    tuna_threads_init(&pool, 2);
    tuna_backend be = tuna_backend_cpu(&pool);
    for (size_t i = 0; i < sizeof qa / sizeof qa[0]; i++) {
        tuna_chat_message msgs[2] = {{TUNA_ROLE_USER, qa[i][0]}, {TUNA_ROLE_ASSISTANT, qa[i][1]}};
        int32_t *ids;
        int L;
        tuna_error err = {0};
        if (tuna_chat_build_ids(ref, tok, msgs, 2, 0, NULL, NULL, 0, &ids, &L, &err) != TUNA_OK) {
            CHECK(0, "%s", err.message);
            return;
        }
        tuna_sequence seq = {.ids = ids, .length = L};
        float *a = malloc(sizeof(float) * (size_t)L * V), *b = malloc(sizeof(float) * (size_t)L * V);
        const tuna_model *models[2] = {ref, q};
        float *outs[2] = {a, b};
        setenv("TUNA_QMM", "sgemm", 1); /* the whole sequence through the dequantised-f32 GEMM */
        for (int m = 0; m < 2; m++) {
            tuna_forward_request rq = {.sequence = &seq, .row_begin = 0, .row_end = L, .logits_mode = TUNA_LOGITS_ALL,
                                       .logits = outs[m]};
            CHECK(tuna_model_forward(models[m], &rq, 1, &be, NULL, &err) == TUNA_OK, "%s", err.message);
        }
        unsetenv("TUNA_QMM");
        for (int r = 20; r + 1 < L; r++) { /* after the shared system prompt */
            int same;
            sum += kld_row(a + (size_t)r * V, b + (size_t)r * V, V, &same);
            same_sum += same;
            positions++;
        }
        tuna_kv_cache cache;
        CHECK(tuna_kv_cache_init(&cache, &q->config, L, 0, &err) == TUNA_OK, "%s", err.message);
        tuna_forward_request rq = {.sequence = &seq, .cache = &cache, .row_begin = 0, .row_end = L - 2,
                                   .logits_mode = TUNA_LOGITS_LAST, .logits = a};
        CHECK(tuna_model_forward(q, &rq, 1, &be, NULL, &err) == TUNA_OK, "%s", err.message);
        rq.row_begin = L - 2, rq.row_end = L - 1;
        CHECK(tuna_model_forward(q, &rq, 1, &be, NULL, &err) == TUNA_OK, "%s", err.message);
        tuna_kv_cache_free(&cache);
        int same;
        double k = kld_row(b + (size_t)(L - 2) * V, a, V, &same);
        if (k > *decode_kld) *decode_kld = k;
        free(a), free(b), free(ids);
    }
    *kld = sum / positions;
    *top1 = (double)same_sum / positions;
}

TEST(quantized_models) {
    char report[1 << 16], dir[256], file[300];
    tuna_model ref;
    tuna_tokenizer *tok;
    tuna_error err = {0};
    REQUIRE(tuna_load_model_and_tokenizer("models/tuna2-small", NULL, &ref, &tok, &err) == TUNA_OK, "%s", err.message);
    static const struct {
        const char *type;
        double max_kld, min_top1;
        tuna_dtype layer, head;
    } cases[] = {
        /* bounds: about 3x the measured on these questions (Q8_0: KLD 1.2e-4, top 0.99; Q4_K: 5.0e-3, 0.96) */
        {"q8_0", 5e-4, 0.97, TUNA_Q8_0, TUNA_Q8_0},
        {"q4_k", 1.5e-2, 0.93, TUNA_Q5_0, TUNA_Q8_0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(dir, sizeof dir, "%s/%s", work, cases[c].type);
        int rc = run_quantize(cases[c].type, dir, report, sizeof report);
        REQUIRE(rc == 0, "quantize %s failed: %s", cases[c].type, report);
        if (strcmp(cases[c].type, "q4_k") == 0) {
            CHECK(strstr(report, "matrices fell back") && strstr(report, "rows of 192 are not a multiple of 256"),
                  "the q4_k fallbacks are reported: %s", report);
            CHECK(strstr(report, "tuna.lm_head.weight                                      Q8_0"),
                  "the LM head wanted Q6_K and fell back to Q8_0");
        }
        snprintf(file, sizeof file, "%s/model.gguf", dir);
        for (int as_file = 0; as_file < 2; as_file++) {
            tuna_model q;
            tuna_tokenizer *qt;
            REQUIRE(tuna_load_model_and_tokenizer(as_file ? file : dir, NULL, &q, &qt, &err) == TUNA_OK, "load: %s",
                    err.message);
            CHECK(tuna_tokenizer_vocab_size(qt) == tuna_tokenizer_vocab_size(tok), "the embedded tokenizer");
            CHECK(strstr(q.config_source, "tuna2.config") != NULL, "config from the file: %s", q.config_source);
            CHECK(q.llm_layers[0].gate_weight->dtype == cases[c].layer, "%s: layer type %s", cases[c].type,
                  tuna_dtype_name(q.llm_layers[0].gate_weight->dtype));
            CHECK(q.lm_head->dtype == cases[c].head, "%s: head type", cases[c].type);
            CHECK(q.head_blocks[0].modulation_weight->dtype == TUNA_BF16, "adaLN kept");
            CHECK(q.final_layer.linear_weight->dtype == TUNA_BF16, "final layer kept");
            if (!as_file) {
                double kld = 1, top1 = 0, dkld = 1;
                compare(&ref, &q, tok, &kld, &top1, &dkld);
                CHECK(kld < cases[c].max_kld, "%s KLD %.6f", cases[c].type, kld);
                CHECK(top1 >= cases[c].min_top1, "%s same top token %.3f", cases[c].type, top1);
                printf("  %s: KLD %.6f top1 %.4f decode-vs-prefill KLD %.3g\n", cases[c].type, kld, top1, dkld);
                CHECK(dkld < 1e-3, "%s: decode step vs whole-sequence row, KLD %.6f", cases[c].type, dkld);
            }
            tuna_tokenizer_free(qt);
            tuna_model_free(&q);
        }
        /* tuna bench on the quantised model: the llama-bench figures, as JSON */
        char cmd[8192], json[400], text[4096];
        snprintf(json, sizeof json, "%s/bench.json", work);
        snprintf(cmd, sizeof cmd, "%s bench -m %s --threads 1 --prompt 16 --decode 4 --gen-size 32 --gen-steps 1 --reps 1 "
                                  "--json %s > /dev/null", tuna_bin, dir, json);
        CHECK(system(cmd) == 0, "tuna bench on %s", dir);
        FILE *f = fopen(json, "r");
        size_t got = f ? fread(text, 1, sizeof text - 1, f) : 0;
        text[got] = '\0';
        if (f) fclose(f);
        CHECK(strstr(text, "\"prefill_tokens_per_s\"") && strstr(text, "\"decode_tokens_per_s\"") &&
                  strstr(text, "\"generation_step_s\"") && strstr(text, cases[c].type[1] == '8' ? "Q8_0" : "Q5_0"),
              "bench JSON: %s", text);
        unlink(json);
        unlink(file);
        rmdir(dir);
    }
    tuna_tokenizer_free(tok);
    tuna_model_free(&ref);
}

TEST(quantize_refuses_bad_usage) {
    char report[4096];
    char dir[300];
    snprintf(dir, sizeof dir, "%s/x", work);
    CHECK(run_quantize("q3_k", dir, report, sizeof report) != 0 && strstr(report, "--type q3_k"), "unknown type: %s", report);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s quantize -m /nonexistent -o %s --type q8_0 > /dev/null 2>&1", tuna_bin, dir);
    CHECK(system(cmd) != 0, "missing source");
    struct stat st;
    CHECK(stat(dir, &st) != 0, "nothing written");
}

int main(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 1;
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    snprintf(tuna_bin, sizeof tuna_bin, "%s/../tuna", exe);
    snprintf(work, sizeof work, "/tmp/tuna-quant-XXXXXX");
    if (!mkdtemp(work)) return 1;
    RUN(quantized_models);
    RUN(quantize_refuses_bad_usage);
    rmdir(work);
    return test_summary();
}
