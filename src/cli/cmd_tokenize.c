/* `tuna tokenize`: JSON lines in, JSON lines out (SPEC section 3).
 *
 *   tuna tokenize [-t tokenizer.json] [--decode] [--skip-special]
 *
 * Encoding reads {"text": "..."} per line and writes {"ids": [...]}; with
 * --decode it reads {"ids": [...]} and writes {"text": "..."}. Output line i
 * answers input line i; blank input lines are skipped. A line that cannot be
 * handled gets {"line": N, "error": "..."} in its place, the rest still go
 * through, and the exit status is 1 at the end if any line failed. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "text/tokenizer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna tokenize [-t tokenizer.json[.gz]] [--decode] [--skip-special]\n"
            "  stdin: one JSON object a line, {\"text\": \"...\"} (or {\"ids\": [...]} with --decode)\n"
            "  stdout: one line per input line, {\"ids\": [...]} (or {\"text\": \"...\"});\n"
            "          a bad line gets {\"line\": N, \"error\": \"...\"} and the exit status is 1\n"
            "  -t PATH         tokenizer (default: the bundled Tuna-2 tokenizer)\n"
            "  --decode        ids to text\n"
            "  --skip-special  leave special tokens out when decoding\n");
}

static void print_error(size_t line_no, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", (double)line_no);
    cJSON_AddStringToObject(o, "error", msg);
    char *s = cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

/* cJSON ends a string at a decoded NUL, which would silently cut the text: refuse
 * an escaped \u0000 (one preceded by an odd number of backslashes). */
static int has_nul_escape(const char *line) {
    for (const char *p = strstr(line, "u0000"); p; p = strstr(p + 1, "u0000")) {
        size_t slashes = 0;
        for (const char *q = p - 1; q >= line && *q == '\\'; q--) slashes++;
        if (slashes % 2 == 1) return 1;
    }
    return 0;
}

static int encode_line(const tuna_tokenizer *tok, const cJSON *j, size_t line_no, tuna_ids *ids) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    if (!cJSON_IsString(text)) {
        print_error(line_no, "expected {\"text\": \"...\"}");
        return 0;
    }
    tuna_error err = {0};
    ids->len = 0;
    if (tuna_tokenizer_encode(tok, text->valuestring, strlen(text->valuestring), ids, &err) != TUNA_OK) {
        print_error(line_no, err.message);
        return 0;
    }
    fputs("{\"ids\":[", stdout);
    for (size_t i = 0; i < ids->len; i++) printf(i ? ",%d" : "%d", ids->data[i]);
    fputs("]}\n", stdout);
    return 1;
}

static int decode_line(const tuna_tokenizer *tok, const cJSON *j, size_t line_no, int skip_special, tuna_ids *ids) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "ids"), *x;
    if (!cJSON_IsArray(list)) {
        print_error(line_no, "expected {\"ids\": [...]}");
        return 0;
    }
    ids->len = 0;
    cJSON_ArrayForEach(x, list) {
        if (!cJSON_IsNumber(x) || x->valuedouble != (double)(int32_t)x->valuedouble) {
            print_error(line_no, "ids must be integers");
            return 0;
        }
        if (tuna_ids_push(ids, (int32_t)x->valuedouble, NULL) != TUNA_OK) {
            print_error(line_no, "out of memory");
            return 0;
        }
    }
    tuna_error err = {0};
    char *text = NULL;
    if (tuna_tokenizer_decode(tok, ids->data, ids->len, skip_special, &text, NULL, &err) != TUNA_OK) {
        print_error(line_no, err.message);
        return 0;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", text);
    char *s = cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
    free(text);
    return 1;
}

int cli_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int decode = 0, skip_special = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) path = argv[++i];
        else if (strcmp(argv[i], "--decode") == 0) decode = 1;
        else if (strcmp(argv[i], "--skip-special") == 0) skip_special = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(stdout); return 0; }
        else { fprintf(stderr, "tuna tokenize: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
    }
    char buf[4096];
    if (!path && !(path = tuna_tokenizer_default_path(buf, sizeof buf))) {
        fprintf(stderr, "tuna tokenize: no bundled tokenizer found (set TUNA_HOME or pass -t)\n");
        return 1;
    }
    tuna_tokenizer *tok = NULL;
    tuna_error err = {0};
    if (tuna_tokenizer_load(path, &tok, &err) != TUNA_OK) {
        fprintf(stderr, "tuna tokenize: %s\n", err.message);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0, line_no = 0, failed = 0;
    ssize_t n;
    tuna_ids ids = {0};
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        line_no++;
        if (strspn(line, " \t\r\n") == (size_t)n) continue;
        if ((size_t)n != strlen(line)) { print_error(line_no, "NUL byte in the line"); failed++; continue; }
        cJSON *j = cJSON_Parse(line);
        int ok;
        if (!j || !cJSON_IsObject(j)) {
            print_error(line_no, "not a JSON object");
            ok = 0;
        } else if (!decode && has_nul_escape(line)) {
            print_error(line_no, "text with U+0000 is not supported");
            ok = 0;
        } else {
            ok = decode ? decode_line(tok, j, line_no, skip_special, &ids) : encode_line(tok, j, line_no, &ids);
        }
        cJSON_Delete(j);
        failed += !ok;
    }
    free(line);
    tuna_ids_free(&ids);
    tuna_tokenizer_free(tok);
    if (failed) fprintf(stderr, "tuna tokenize: %zu of %zu lines failed\n", failed, line_no);
    return failed ? 1 : 0;
}
