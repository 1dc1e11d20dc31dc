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

#include <pthread.h>

static serve_fixture F;
static int tokens_per_request = 128;

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

/* One reply through the chat session (what `tuna understand` calls). */
static int session_reply(const char *prompt, uint64_t seed, float temp, double *ttft, double *decode_s, int *tokens,
                         char **text) {
    tuna_chat_session s;
    tuna_error err = {0};
    if (tuna_chat_session_init(&s, &F.model, F.tok, 4096, &F.pool, &err) != TUNA_OK) return -1;
    tuna_chat_message m = {TUNA_ROLE_USER, prompt};
    timing t = {0};
    tuna_reply_params p = {.sampling = {.temperature = temp, .top_p = 1}, .max_tokens = 256, .on_text = on_piece,
                           .on_text_ctx = &t};
    tuna_rng rng;
    tuna_rng_seed(&rng, seed);
    t.t0 = bench_now();
    int rc = tuna_chat_session_reply(&s, &m, 1, &p, &rng, text, tokens, &err) == TUNA_OK ? 0 : -1;
    double end = bench_now();
    tuna_chat_session_free(&s);
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
    int threads = 0, reps = 15;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--tokens") == 0) tokens_per_request = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--reps") == 0) reps = atoi(argv[i + 1]);
    }
    sink = fopen("/dev/null", "w");
    if (!sink || serve_fixture_load(&F) != 0) return 1;
    tuna_threads_init(&F.pool, threads);
    tuna_server_options o;
    tuna_server_default_options(&o);
    if (serve_fixture_start(&F, 8, 64, &o) != 0) return 1;
    double cpu0 = bench_cpu_seconds(), wall0 = bench_now();
    printf("bench_serve: bundled model, %d threads, %d tokens per throughput request\n\n", F.pool.count,
           tokens_per_request);

    /* 1. a prompt with a long sampled reply (same seed both ways gives the same reply) */
    const char *prompt = "Tell me about the shirt in this picture";
    uint64_t seed = 0;
    int best = 0;
    for (uint64_t sd = 0; sd < 400; sd++) {
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
             "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"temperature\":1.5,\"seed\":%llu,\"max_tokens\":256,"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             prompt, (unsigned long long)seed);
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

    /* 2. continuous batching */
    throughput(1, 1); /* warm */
    double one = throughput(1, 3), four = throughput(4, 2), eight = throughput(8, 1);
    printf("| clients at once | completion tokens/s | vs 1 |\n|---|---|---|\n");
    printf("| 1 | %.0f | 1.00x |\n| 4 | %.0f | %.2fx |\n| 8 | %.0f | %.2fx |\n\n", one, four, four / one, eight,
           eight / one);

    /* 3. two equal waves */
    long rss[3] = {rss_kb(), 0, 0};
    for (int wave = 0; wave < 2; wave++) {
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
    printf("| RSS | kB |\n|---|---|\n| before | %ld |\n| after wave 1 (32 chats, 8 images) | %ld |\n"
           "| after wave 2 (the same) | %ld (%+ld) |\n\n",
           rss[0], rss[1], rss[2], rss[2] - rss[1]);
    double cpu = bench_cpu_seconds() - cpu0, wall = bench_now() - wall0;
    printf("CPU share: %.0f%% of %d threads over %.1f s (below 100%%: the machine was shared)\n",
           100 * cpu / (wall * (F.pool.count + 1)), F.pool.count + 1, wall);
    serve_fixture_free(&F);
    return 0;
}
