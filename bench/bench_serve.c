/* `tuna serve` on the bundled model, in process over loopback HTTP:
 *
 *  1. the same prompt through the chat session `tuna understand` runs
 *     (tuna_chat_session_reply, streamed by its on_text callback) and through
 *     the server (SSE): time to first token and tokens/s of the whole reply
 *     (its tokens over the time from the request to the last token), medians
 *     and bests over --reps runs, the same sampled reply both ways (same seed);
 *  2. throughput: --tokens tokens per request (ignore_eos), 1 client alone,
 *     then 4 and 8 clients at once (continuous batching): total completion
 *     tokens / wall seconds;
 *  3. memory: two equal waves of 4 concurrent chats + an image request, RSS
 *     of the process after each.
 *
 *   build/bench/bench_serve [--threads N] [--tokens 128] [--reps 15] */
#include "bench_common.h"

#include "../tests/serve_client.h"
#include "infer/understand.h"
#include "model/forward.h"

#include <pthread.h>

static serve_fixture F;
static int tokens_per_request = 128;
static int reply_tokens = 256;

typedef struct {
    double t0, first;
    int pieces;
} timing;

static FILE *sink; /* /dev/null: each piece written and flushed, as `tuna understand` prints it */

static void on_piece(void *ctx, const char *piece, size_t len) {
    timing *t = ctx;
    if (len && t->first == 0) t->first = bench_now();
    fwrite(piece, 1, len, sink);
    fflush(sink);
    t->pieces++;
}

/* One reply through the chat session (what `tuna understand` calls). The
 * session is made once and its cache emptied before each reply: the prompt
 * is computed every time (as the server does for each request), on memory
 * already touched (as the server's slots are). */
static tuna_chat_session session;

static int session_reply(const char *prompt, uint64_t seed, float temp, double *ttft, double *decode_s, int *tokens,
                         char **text) {
    tuna_chat_session *s = &session;
    tuna_error err = {0};
    tuna_kv_cache_truncate(&s->cache, 0);
    tuna_chat_message m = {TUNA_ROLE_USER, prompt};
    timing t = {0};
    tuna_reply_params p = {.sampling = {.temperature = temp, .top_p = 1}, .max_tokens = reply_tokens, .on_text = on_piece,
                           .on_text_ctx = &t};
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    t.t0 = bench_now();
    int rc = tuna_chat_session_reply(s, &m, 1, &p, &rng, text, tokens, &err) == TUNA_OK ? 0 : -1;
    double end = bench_now();
    *ttft = t.first - t.t0;
    *decode_s = end - t.first;
    return rc;
}

/* One streamed reply over HTTP: first content delta, [DONE], the usage's tokens. */
static int http_stream(const char *body, double *ttft, double *decode_s, int *tokens) {
    double t0 = bench_now(), first = 0;
    int fd = http_connect(F.port);
    if (fd < 0 || http_send(fd, "POST", "/v1/chat/completions", "", "application/json", body, strlen(body))) return -1;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        if (first == 0) {
            const char *c = strstr(buf, "\"content\":\"");
            while (c && c[11] == '"') c = strstr(c + 11, "\"content\":\"");
            if (c) first = bench_now();
        }
        if (strstr(buf + (len > (size_t)r + 16 ? len - (size_t)r - 16 : 0), "[DONE]")) break;
    }
    double end = bench_now();
    close(fd);
    const char *u = strstr(buf, "\"completion_tokens\":");
    *tokens = u ? atoi(u + 20) : -1;
    free(buf);
    *ttft = first - t0;
    *decode_s = end - first;
    return first > 0 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    int seed, tokens, status;
} load_thread;

static void *load_one(void *arg) {
    load_thread *t = arg;
    char body[512];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story\"}],\"temperature\":1,\"seed\":%d,"
             "\"max_tokens\":%d,\"ignore_eos\":true}",
             t->seed, tokens_per_request);
    http_response r;
    t->status = http_post_json(F.port, "/v1/chat/completions", body, &r) == 0 ? r.status : -1;
    const char *u = t->status == 200 ? strstr(r.body, "\"completion_tokens\":") : NULL;
    t->tokens = u ? atoi(u + 20) : 0;
    http_response_free(&r);
    return NULL;
}

/* clients at once, each one request; tokens/s over the wall time. */
static double throughput(int clients, int rounds) {
    double t0 = bench_now();
    long total = 0;
    for (int round = 0; round < rounds; round++) {
        load_thread t[16];
        pthread_t th[16];
        for (int k = 0; k < clients; k++) {
            t[k] = (load_thread){round * 16 + k, 0, 0};
            pthread_create(&th[k], NULL, load_one, &t[k]);
        }
        for (int k = 0; k < clients; k++) {
            pthread_join(th[k], NULL);
            if (t[k].status != 200) fprintf(stderr, "bench_serve: request failed (%d)\n", t[k].status);
            total += t[k].tokens;
        }
    }
    return total / (bench_now() - t0);
}

/* The engine's step without HTTP: one forward of one new row for each of k
 * chats (their prompts cached), best and median of reps, in ms. */
static void forward_step(int k, int reps, double *best, double *med) {
    tuna_kv_cache caches[8];
    tuna_sequence seqs[8];
    tuna_forward_request rq[8];
    int32_t *ids = NULL;
    int length = 0;
    tuna_chat_message m = {TUNA_ROLE_USER, "Tell me a story about a red shirt and a blue sandal"};
    tuna_error err = {0};
    tuna_chat_build_ids(&F.model, F.tok, &m, 1, 1, NULL, NULL, 0, &ids, &length, &err);
    tuna_backend be = tuna_backend_cpu(&F.pool);
    tuna_workspace ws;
    tuna_workspace_init(&ws, &be);
    float *logits = malloc(sizeof(float) * 8 * (size_t)F.model.config.vocab_size);
    for (int i = 0; i < k; i++) {
        tuna_kv_cache_init(&caches[i], &F.model.config, length + 8, 0, &err);
        seqs[i] = (tuna_sequence){.ids = ids, .length = length};
        rq[i] = (tuna_forward_request){.sequence = &seqs[i], .cache = &caches[i], .row_begin = 0,
                                       .row_end = length - 1, .logits_mode = TUNA_LOGITS_LAST,
                                       .logits = logits + (size_t)i * F.model.config.vocab_size};
        tuna_model_forward(&F.model, &rq[i], 1, &be, &ws, &err);
        rq[i].row_begin = length - 1;
        rq[i].row_end = length;
    }
    double t[256];
    if (reps > 256) reps = 256;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < k; i++) tuna_kv_cache_truncate(&caches[i], length - 1);
        double t0 = bench_now();
        tuna_model_forward(&F.model, rq, k, &be, &ws, &err);
        t[r] = (bench_now() - t0) * 1e3;
    }
    *med = median(t, reps);
    *best = t[0];
    for (int i = 0; i < k; i++) tuna_kv_cache_free(&caches[i]);
    tuna_workspace_free(&ws);
    free(logits);
    free(ids);
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

int main(int argc, char **argv) {
    int threads = 0, reps = 15, waves = 1;
    const char *model = "models/tuna2-small";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--tokens") == 0) tokens_per_request = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0) reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--model") == 0) model = argv[i + 1];
        else if (strcmp(argv[i], "--reply-tokens") == 0) reply_tokens = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--waves") == 0) waves = atoi(argv[i + 1]);
    }
    sink = fopen("/dev/null", "w");
    if (!sink || serve_fixture_load_dir(&F, model) != 0) return 1;
    tuna_threads_init(&F.pool, threads);
    tuna_server_options o;
    tuna_server_default_options(&o);
    if (serve_fixture_start(&F, 8, 64, &o) != 0) return 1;
    double cpu0 = bench_cpu_seconds(), wall0 = bench_now();
    printf("bench_serve: %s, %d threads, %d tokens per throughput request\n\n", model, F.pool.count,
           tokens_per_request);

    tuna_error serr = {0};
    if (tuna_chat_session_init(&session, &F.model, F.tok, 4096, &F.pool, &serr) != TUNA_OK) return 1;
    /* 1. a prompt with a long sampled reply (same seed both ways gives the same reply) */
    const char *prompt = "Tell me about the shirt in this picture";
    uint64_t seed = 0;
    int best = 0;
    for (uint64_t sd = 0; sd < (reply_tokens >= 256 ? 400u : 1u); sd++) {
        double a, b;
        int n;
        char *text = NULL;
        if (session_reply(prompt, sd, 1.5f, &a, &b, &n, &text) == 0 && n > best) best = n, seed = sd;
        free(text);
    }
    double s_ttft[64], s_rate[64], h_ttft[64], h_rate[64];
    int s_tokens = 0, h_tokens = 0;
    char body[512];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"temperature\":1.5,\"seed\":%llu,\"max_tokens\":%d,"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             prompt, (unsigned long long)seed, reply_tokens);
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
        double ttft, dec;
        char *text = NULL;
        session_reply(prompt, seed, 1.5f, &ttft, &dec, &s_tokens, &text);
        free(text);
        s_ttft[r] = ttft * 1e3;
        s_rate[r] = s_tokens / (ttft + dec); /* the whole reply: request to last token */
        http_stream(body, &ttft, &dec, &h_tokens);
        h_ttft[r] = ttft * 1e3;
        h_rate[r] = h_tokens / (ttft + dec);
    }
    if (getenv("BENCH_SERVE_VERBOSE")) {
        qsort(s_ttft, (size_t)reps, sizeof(double), cmp_double);
        qsort(h_ttft, (size_t)reps, sizeof(double), cmp_double);
        for (int r = 0; r < reps; r++) printf("  ttft %2d: session %6.2f ms   HTTP %6.2f ms\n", r, s_ttft[r], h_ttft[r]);
    }
    double st = median(s_ttft, reps), sr = median(s_rate, reps), ht = median(h_ttft, reps), hr = median(h_rate, reps);
    printf("best of %d: session %.2f ms, %.0f tokens/s; HTTP %.2f ms, %.0f tokens/s\n", reps, s_ttft[0],
           s_rate[reps - 1], h_ttft[0], h_rate[reps - 1]);
    printf("same prompt, %d-token sampled reply (seed %llu), median of %d\n", s_tokens, (unsigned long long)seed, reps);
    printf("| path | time to first token | tokens/s (whole reply, request to last token) |\n|---|---|---|\n");
    printf("| chat session (`tuna understand`) | %.2f ms | %.0f |\n", st, sr);
    printf("| HTTP SSE (`tuna serve`) | %.2f ms | %.0f |\n", ht, hr);
    printf("| HTTP vs session | %+.1f%% | %+.1f%% |\n\n", 100 * (ht - st) / st, 100 * (hr - sr) / sr);
    if (h_tokens != s_tokens) printf("(token counts differ: session %d, HTTP %d)\n", s_tokens, h_tokens);

    /* 2. continuous batching: the step itself, then over HTTP */
    double b1, m1, b4, m4, b8, m8;
    forward_step(1, 200, &b1, &m1);
    forward_step(4, 200, &b4, &m4);
    forward_step(8, 200, &b8, &m8);
    printf("| decode step (one forward, no HTTP) | best ms | median ms | tokens/s at the best | vs 1 |\n"
           "|---|---|---|---|---|\n");
    printf("| 1 chat | %.3f | %.3f | %.0f | 1.00x |\n", b1, m1, 1e3 / b1);
    printf("| 4 chats | %.3f | %.3f | %.0f | %.2fx |\n", b4, m4, 4e3 / b4, 4 * b1 / b4);
    printf("| 8 chats | %.3f | %.3f | %.0f | %.2fx |\n\n", b8, m8, 8e3 / b8, 8 * b1 / b8);
    /* over HTTP: 1 and 4 clients alternated (a busy machine hits both alike), the best of 3 each */
    throughput(1, 1); /* warm */
    double one = 0, four = 0, eight = 0;
    for (int r = 0; r < 3; r++) {
        double a = throughput(1, 2), b = throughput(4, 1), c = throughput(8, 1);
        if (a > one) one = a;
        if (b > four) four = b;
        if (c > eight) eight = c;
    }
    printf("| clients at once | completion tokens/s | vs 1 |\n|---|---|---|\n");
    printf("| 1 | %.0f | 1.00x |\n| 4 | %.0f | %.2fx |\n| 8 | %.0f | %.2fx |\n\n", one, four, four / one, eight,
           eight / one);

    /* 3. two equal waves */
    long rss[3] = {rss_kb(), 0, 0};
    for (int wave = 0; wave < 2 * waves; wave++) {
        for (int round = 0; round < 8; round++) {
            load_thread t[4];
            pthread_t th[4];
            for (int k = 0; k < 4; k++) {
                t[k] = (load_thread){round * 4 + k, 0, 0};
                pthread_create(&th[k], NULL, load_one, &t[k]);
            }
            http_response r;
            http_post_json(F.port, "/v1/images/generations", "{\"prompt\":\"a shoe\",\"steps\":4}", &r);
            http_response_free(&r);
            for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
        }
        rss[wave + 1] = rss_kb();
    }
    if (waves)
        printf("| RSS | kB |\n|---|---|\n| before | %ld |\n| after wave 1 (32 chats, 8 images) | %ld |\n"
               "| after wave 2 (the same) | %ld (%+ld) |\n\n",
               rss[0], rss[1], rss[2], rss[2] - rss[1]);
    double cpu = bench_cpu_seconds() - cpu0, wall = bench_now() - wall0;
    printf("CPU share: %.0f%% of %d threads over %.1f s (below 100%%: the machine was shared)\n",
           100 * cpu / (wall * (F.pool.count + 1)), F.pool.count + 1, wall);
    tuna_chat_session_free(&session);
    serve_fixture_free(&F);
    return 0;
}
