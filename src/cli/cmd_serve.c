/* `tuna serve`: the OpenAI-compatible HTTP server (src/serve/server.h) until
 * SIGINT or SIGTERM. Listens on loopback unless --host says otherwise. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "serve/server.h"

#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [options]\n\n"
            "An OpenAI-compatible server: /v1/chat/completions (text, images, streaming, tools,\n"
            "response_format), /v1/images/generations, /v1/images/edits, /v1/models, /health,\n"
            "/metrics, and a playground page at /. See docs/serve.md.\n\n"
            "  -m, --model DIR          model (default: $TUNA_MODEL or the bundled model)\n"
            "  -t, --tokenizer FILE     tokenizer.json (default: the model's)\n"
            "      --host HOST          address to listen on (default 127.0.0.1: this machine only)\n"
            "      --port N             port (default 8080; 0: any free port, printed)\n"
            "      --api-key KEY        require Authorization: Bearer KEY on /v1/* and /metrics\n"
            "                           (default: $TUNA_API_KEY; none when unset)\n"
            "      --model-name NAME    the id /v1/models lists (default: the model directory's name)\n"
            "      --slots N            chats decoded together (default 8)\n"
            "      --context N          positions of one chat, prompt + reply (default 4096)\n"
            "      --queue N            requests waiting at most; more get 429 (default 64)\n"
            "      --max-body BYTES     largest request body; more get 413 (default 32 MiB)\n"
            "      --max-image-pixels N largest uploaded image, checked before decoding (default 16777216)\n"
            "      --max-connections N  connections at once (default 64)\n"
            "      --timeout S          close a connection silent this long (default 60)\n"
            "      --request-timeout S  end a request that runs longer (504; default 600)\n"
            "      --image-size WxH     size images are given to the model (default: SPEC section 4's\n"
            "                           bucket for patch 16, else 8 patches square)\n"
            "      --steps N            Euler steps of an image request without \"steps\" (default 50)\n"
            "      --allow-files DIR    accept image_url file:// paths under DIR (default: refused)\n"
            "      --threads N          threads (default: TUNA_THREADS or all cores)\n"
            "      --dtype f32|bf16     precision of the weight matrices (default: the checkpoint's)\n"
            "      --quiet              no line per request on stderr\n");
}

typedef struct {
    const char *model, *tokenizer, *dtype, *model_name;
    int threads, slots, queue, quiet;
    tuna_server_options server;
} serve_options;

static int parse_options(int argc, char **argv, serve_options *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},          {"tokenizer", required_argument, 0, 't'},
        {"host", required_argument, 0, 'H'},           {"port", required_argument, 0, 'p'},
        {"api-key", required_argument, 0, 'k'},        {"model-name", required_argument, 0, 'N'},
        {"slots", required_argument, 0, 's'},          {"context", required_argument, 0, 'C'},
        {"queue", required_argument, 0, 'q'},          {"max-body", required_argument, 0, 'B'},
        {"max-image-pixels", required_argument, 0, 'X'}, {"max-connections", required_argument, 0, 'c'},
        {"timeout", required_argument, 0, 'T'},        {"request-timeout", required_argument, 0, 'R'},
        {"image-size", required_argument, 0, 'S'},     {"steps", required_argument, 0, 'e'},
        {"allow-files", required_argument, 0, 'F'},    {"threads", required_argument, 0, 'n'},
        {"dtype", required_argument, 0, 'd'},          {"quiet", no_argument, 0, 'Q'},
        {"help", no_argument, 0, 'h'},                 {0, 0, 0, 0}};
    int c;
    optind = 1;
    tuna_server_options *s = &o->server;
    while ((c = getopt_long(argc, argv, "m:t:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'H': s->host = optarg; break;
        case 'p': if (cli_int("serve", "--port", optarg, 0, 65535, &s->port)) return 2; break;
        case 'k': s->api_key = optarg; break;
        case 'N': o->model_name = optarg; break;
        case 's': if (cli_int("serve", "--slots", optarg, 1, 64, &o->slots)) return 2; break;
        case 'C': if (cli_int("serve", "--context", optarg, 64, 1 << 20, &s->context)) return 2; break;
        case 'q': if (cli_int("serve", "--queue", optarg, 1, 1 << 20, &o->queue)) return 2; break;
        case 'B': {
            long long v;
            if (cli_i64("serve", "--max-body", optarg, 1024, 1LL << 40, &v)) return 2;
            s->limits.max_body = (size_t)v;
            break;
        }
        case 'X': {
            long long v;
            if (cli_i64("serve", "--max-image-pixels", optarg, 64, 1LL << 40, &v)) return 2;
            s->limits.max_image_pixels = v;
            break;
        }
        case 'c': if (cli_int("serve", "--max-connections", optarg, 1, 1 << 20, &s->max_connections)) return 2; break;
        case 'T': if (cli_int("serve", "--idle-timeout", optarg, 1, 1 << 24, &s->idle_timeout_s)) return 2; break;
        case 'R': if (cli_int("serve", "--request-timeout", optarg, 1, 1 << 24, &s->request_timeout_s)) return 2; break;
        case 'S':
            if (cli_parse_size(optarg, &s->image_height, &s->image_width)) {
                fprintf(stderr, "tuna serve: --image-size wants WxH (width first, as --size)\n");
                return 2;
            }
            break;
        case 'e': if (cli_int("serve", "--steps", optarg, 1, 10000, &s->default_steps)) return 2; break;
        case 'F': s->limits.files_dir = optarg; break;
        case 'n': if (cli_int("serve", "--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case 'd': o->dtype = optarg; break;
        case 'Q': o->quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (s->port < 0 || s->port > 65535 || o->slots < 1 || o->slots > 64 || s->context < 64 ||
        s->context > (1 << 20) || o->queue < 1 || s->limits.max_body < 1024 || s->limits.max_image_pixels < 64 ||
        s->max_connections < 1 || s->idle_timeout_s < 1 || s->request_timeout_s < 1 || s->default_steps < 1 ||
        s->default_steps > s->limits.max_steps) {
        fprintf(stderr, "tuna serve: an option is out of range (see tuna serve --help)\n");
        return 2;
    }
    return -1;
}

int cli_cmd_serve(int argc, char **argv) {
    serve_options o;
    memset(&o, 0, sizeof o);
    tuna_server_default_options(&o.server);
    o.slots = 8;
    o.queue = 64;
    o.server.api_key = getenv("TUNA_API_KEY");
    if (o.server.api_key && !o.server.api_key[0]) o.server.api_key = NULL;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    o.server.log = !o.quiet;

    /* signals: the threads started below inherit this mask; the main thread waits for them */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    tuna_model model;
    tuna_tokenizer *tok = NULL;
    if (cli_load_model(o.model, o.tokenizer, &model, &tok, "serve")) return 1;
    if (cli_apply_dtype(&model, o.dtype, "serve")) {
        tuna_model_free(&model);
        tuna_tokenizer_free(tok);
        return 1;
    }
    char dir_buf[4096], name_buf[256];
    if (!o.model_name) {
        const char *dir = tuna_model_dir(o.model, dir_buf, sizeof dir_buf);
        snprintf(name_buf, sizeof name_buf, "%s", dir ? dir : "tuna2");
        size_t n = strlen(name_buf);
        while (n > 1 && name_buf[n - 1] == '/') name_buf[--n] = '\0';
        o.model_name = basename(name_buf);
    }
    o.server.model_name = o.model_name;
    tuna_threads pool;
    tuna_threads_init(&pool, o.threads);
    tuna_serve_engine_options eo = {.slots = o.slots, .context = o.server.context, .queue = o.queue};
    tuna_serve_engine *engine = NULL;
    tuna_server *server = NULL;
    tuna_error err = {0};
    rc = tuna_serve_engine_start(&model, tok, &pool, &eo, &engine, &err) == TUNA_OK ? 0 : 1;
    if (!rc) rc = tuna_server_start(&model, tok, engine, &o.server, &server, &err) == TUNA_OK ? 0 : 1;
    if (rc) {
        fprintf(stderr, "tuna serve: %s\n", err.message);
    } else {
        const char *host = o.server.host;
        int v6 = strchr(host, ':') != NULL;
        fprintf(stderr, "tuna serve: %s on http://%s%s%s:%d/ (%d slots, context %d, %d threads%s)\n", o.model_name,
                v6 ? "[" : "", host, v6 ? "]" : "", tuna_server_port(server), o.slots, o.server.context, pool.count,
                o.server.api_key ? ", API key required" : "");
        fflush(stderr);
        int sig = 0;
        sigwait(&stop, &sig);
        fprintf(stderr, "tuna serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    tuna_server_stop(server);
    tuna_serve_engine_stop(engine);
    tuna_tokenizer_free(tok);
    tuna_model_free(&model);
    return rc;
}
