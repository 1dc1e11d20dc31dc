/* Tokenizer encode speed, single thread, beside Hugging Face `tokenizers`.
 *
 *   build/bench/bench_tokenizer [TEXTFILE] [-t tokenizer.json] [--no-hf]
 *
 * Without TEXTFILE the text is every "text" of tests/fixtures/tokenizer/corpus.jsonl
 * (repository files, random Unicode, whitespace, numbers...) joined by newlines and
 * repeated to about 4 MB. Measures (best of 3) one encode of the whole text, and an
 * encode per line (the batch case), then runs tools/bench_hf_tokenizer.py on the
 * same file and prints its figures, or says why it could not. Run from the repo root. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/mapped_file.h"
#include "text/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The corpus texts joined by '\n', repeated to about target bytes. */
static char *corpus_text(size_t target, size_t *len) {
    FILE *in = fopen("tests/fixtures/tokenizer/corpus.jsonl", "r");
    if (!in) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap), *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, in) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *t = cJSON_GetObjectItem(j, "text");
        if (cJSON_IsString(t)) {
            size_t k = strlen(t->valuestring);
            while (n + k + 2 > cap) buf = realloc(buf, cap *= 2);
            memcpy(buf + n, t->valuestring, k);
            n += k;
            buf[n++] = '\n';
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(in);
    size_t one = n;
    while (n + one <= target) {
        while (n + one + 1 > cap) buf = realloc(buf, cap *= 2);
        memcpy(buf + n, buf, one);
        n += one;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    const char *text_path = NULL, *tok_path = NULL;
    int run_hf = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) tok_path = argv[++i];
        else if (strcmp(argv[i], "--no-hf") == 0) run_hf = 0;
        else text_path = argv[i];
    }
    char pbuf[4096];
    if (!tok_path && !(tok_path = tuna_tokenizer_default_path(pbuf, sizeof pbuf))) {
        fprintf(stderr, "no bundled tokenizer found\n");
        return 1;
    }
    tuna_error err = {0};
    tuna_tokenizer *tok;
    double t0 = now();
    if (tuna_tokenizer_load(tok_path, &tok, &err) != TUNA_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("load: %.3f s (%s)\n", now() - t0, tok_path);

    char *text = NULL;
    size_t len = 0;
    char tmp[] = "/tmp/tuna_bench_tokenizer_XXXXXX";
    if (text_path) {
        if (tuna_read_file(text_path, (size_t)1 << 30, &text, &len, &err) != TUNA_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
    } else {
        text = corpus_text(4u << 20, &len);
        if (!text) { fprintf(stderr, "run from the repository root (corpus.jsonl not found)\n"); return 1; }
        int fd = mkstemp(tmp);
        if (fd < 0 || write(fd, text, len) != (ssize_t)len) { fprintf(stderr, "cannot write %s\n", tmp); return 1; }
        close(fd);
        text_path = tmp;
    }
    double mb = (double)len / 1e6;
    printf("text: %.2f MB\n", mb);

    tuna_ids ids = {0};
    double best_big = 1e30, best_lines = 1e30;
    size_t n_ids = 0;
    for (int rep = 0; rep < 3; rep++) {
        ids.len = 0;
        double t = now();
        tuna_tokenizer_encode(tok, text, len, &ids, NULL);
        double dt = now() - t;
        if (dt < best_big) best_big = dt;
        n_ids = ids.len;
        t = now();
        for (const char *p = text, *end = text + len; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
            ids.len = 0;
            tuna_tokenizer_encode(tok, p, k, &ids, NULL);
            p += k + 1;
        }
        dt = now() - t;
        if (dt < best_lines) best_lines = dt;
    }
    printf("tuna  encode, one text : %7.2f MB/s  (%zu ids)\n", mb / best_big, n_ids);
    printf("tuna  encode, per line : %7.2f MB/s\n", mb / best_lines);

    if (run_hf) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "python3 tools/bench_hf_tokenizer.py '%s' '%s' 3 2>&1", tok_path, text_path);
        FILE *p = popen(cmd, "r");
        double hf_big = 0, hf_lines = 0;
        char line[512];
        while (p && fgets(line, sizeof line, p)) {
            if (sscanf(line, "hf_big_mbps %lf", &hf_big) == 1 || sscanf(line, "hf_lines_mbps %lf", &hf_lines) == 1)
                continue;
            printf("hf: %s", line);
        }
        if (p) pclose(p);
        if (hf_big > 0 && hf_lines > 0) {
            printf("HF    encode, one text : %7.2f MB/s  (tokenizers, RAYON_NUM_THREADS=1)\n", hf_big);
            printf("HF    encode_batch     : %7.2f MB/s\n", hf_lines);
            printf("speed-up: %.2fx one text, %.2fx per line\n", mb / best_big / hf_big, mb / best_lines / hf_lines);
        } else {
            printf("HF figures unavailable (python3 or the tokenizers package missing): ours alone above\n");
        }
    }
    if (text_path == tmp) unlink(tmp);
    tuna_ids_free(&ids);
    free(text);
    tuna_tokenizer_free(tok);
    return 0;
}
