/* A minimal loopback HTTP/1.0 client for the `tuna serve` tests and the
 * serving benchmark: one request per connection, the response read to the
 * end (HTTP/1.0: no chunked encoding, the server closes after the body), an
 * in-process server and engine on the bundled model. */
#ifndef TUNA_TESTS_SERVE_CLIENT_H
#define TUNA_TESTS_SERVE_CLIENT_H

#include "infer/prepare.h"
#include "serve/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int status;
    char *head; /* status line and headers */
    char *body;
    size_t body_len;
} http_response;

static inline void http_response_free(http_response *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

static inline int http_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static inline int http_write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Send a request; extra_headers is "" or lines each ending in \r\n. */
static inline int http_send(int fd, const char *method, const char *path, const char *extra_headers,
                     const char *content_type, const char *body, size_t body_len) {
    char head[2048];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s", method, path,
                     extra_headers ? extra_headers : "");
    if (body) n += snprintf(head + n, sizeof head - (size_t)n, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                            content_type ? content_type : "application/json", body_len);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (http_write_all(fd, head, (size_t)n)) return -1;
    if (body && body_len && http_write_all(fd, body, body_len)) return -1;
    return 0;
}

/* Read to the end (or timeout_ms of silence); split head and body. */
static inline int http_read_response(int fd, int timeout_ms, http_response *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, timeout_ms);
        if (pr <= 0) break;
        if (len + 4096 > cap) {
            cap *= 2;
            char *b = realloc(buf, cap);
            if (!b) break;
            buf = b;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep) {
        free(buf);
        return -1;
    }
    size_t hl = (size_t)(sep - buf);
    out->head = malloc(hl + 1);
    memcpy(out->head, buf, hl);
    out->head[hl] = '\0';
    out->body_len = len - hl - 4;
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, sep + 4, out->body_len);
    out->body[out->body_len] = '\0';
    free(buf);
    if (sscanf(out->head, "HTTP/%*s %d", &out->status) != 1) out->status = -1;
    return 0;
}

static inline int http_request_full(int port, const char *method, const char *path, const char *extra_headers,
                             const char *content_type, const char *body, size_t body_len, http_response *out) {
    int fd = http_connect(port);
    if (fd < 0) return -1;
    int rc = http_send(fd, method, path, extra_headers, content_type, body, body_len);
    if (rc == 0) rc = http_read_response(fd, 60000, out);
    close(fd);
    return rc;
}

static inline int http_post_json(int port, const char *path, const char *json, http_response *out) {
    return http_request_full(port, "POST", path, "", "application/json", json, strlen(json), out);
}

static inline int http_get(int port, const char *path, http_response *out) {
    return http_request_full(port, "GET", path, "", NULL, NULL, 0, out);
}

static inline double client_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- an in-process server on the bundled model ---------------------------------------------- */

typedef struct {
    tuna_model model;
    tuna_tokenizer *tok;
    tuna_threads pool;
    tuna_serve_engine *engine;
    tuna_server *server;
    int port;
    int loaded;
} serve_fixture;

static inline int serve_fixture_load_dir(serve_fixture *f, const char *dir) {
    memset(f, 0, sizeof *f);
    tuna_error err = {0};
    if (tuna_load_model_and_tokenizer(dir, NULL, &f->model, &f->tok, &err) != TUNA_OK) {
        fprintf(stderr, "  loading the bundled model: %s\n", err.message);
        return -1;
    }
    /* one compute thread: the tests measure no speed, and a second OpenMP thread on a
     * busy machine makes every barrier wait for a time slice */
    tuna_threads_init(&f->pool, 1);
    f->loaded = 1;
    return 0;
}

static inline int serve_fixture_load(serve_fixture *f) { return serve_fixture_load_dir(f, "models/tuna2-small"); }

/* Start an engine and a server on a free loopback port. opts may be NULL (defaults). */
static inline int serve_fixture_start(serve_fixture *f, int slots, int queue, const tuna_server_options *opts) {
    tuna_server_options o;
    if (opts) o = *opts;
    else tuna_server_default_options(&o);
    o.host = "127.0.0.1";
    o.port = 0;
    o.model_name = "tuna2-small";
    tuna_serve_engine_options eo = {.slots = slots, .context = o.context, .queue = queue};
    tuna_error err = {0};
    if (tuna_serve_engine_start(&f->model, f->tok, &f->pool, &eo, &f->engine, &err) != TUNA_OK ||
        tuna_server_start(&f->model, f->tok, f->engine, &o, &f->server, &err) != TUNA_OK) {
        fprintf(stderr, "  starting the server: %s\n", err.message);
        tuna_serve_engine_stop(f->engine);
        f->engine = NULL;
        return -1;
    }
    f->port = tuna_server_port(f->server);
    return 0;
}

static inline void serve_fixture_stop(serve_fixture *f) {
    tuna_server_stop(f->server);
    tuna_serve_engine_stop(f->engine);
    f->server = NULL;
    f->engine = NULL;
}

static inline void serve_fixture_free(serve_fixture *f) {
    if (f->server || f->engine) serve_fixture_stop(f);
    if (f->loaded) {
        tuna_tokenizer_free(f->tok);
        tuna_model_free(&f->model);
    }
    memset(f, 0, sizeof *f);
}

#endif
