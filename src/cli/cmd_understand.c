/* `tuna understand`: answers about images (or a plain text chat), streamed to
 * stdout token by token; `--interactive` keeps a conversation going on stdin
 * with slash commands (/help, /image, /reset, /quit), context handling (the
 * oldest turns give way when the context is full) and Ctrl-C to stop a reply.
 * Flag vocabulary: docs/cli.md. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/mapped_file.h"
#include "infer/understand.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE (1 << 20) /* longest chat line read (bytes) */

typedef struct {
    const char *model, *tokenizer, *prompt, *prompt_file, *system, *dtype;
    const char *images[TUNA_CHAT_MAX_IMAGES];
    tuna_image_request size;
    int image_count, max_tokens, context, threads, interactive, quiet;
    tuna_token_sampling sampling;
    unsigned long long seed;
} understand_options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna understand [-m MODEL] [-i IMG ...] -p TEXT | -f FILE [options]\n"
            "       tuna understand [-m MODEL] [-i IMG ...] --interactive\n\n"
            "The answer is streamed to stdout as it is decoded. Without an image it is a text chat.\n\n"
            "  -m, --model DIR       model directory (default: $TUNA_MODEL or the bundled model)\n"
            "  -t, --tokenizer FILE  tokenizer.json (default: the model's, else the bundled one)\n"
            "  -i, --image FILE      an image (repeatable, up to %d); each becomes an <image> of the\n"
            "                        first user turn\n"
            "  -p, --prompt TEXT     the question\n"
            "  -f, --prompt-file FILE the question, read from a file\n"
            "      --interactive     chat on stdin; /help lists the commands, Ctrl-C stops a reply\n"
            "      --system TEXT     system prompt (default: Qwen's)\n"
            "  -W, --width N, -H, --height N\n"
            "      --size WxH|native image size (default: the size the model was trained for, nearest\n"
            "                        the image's aspect ratio; native: the image's own size)\n"
            "      --max-tokens N    longest reply, 1..65536 (default 256)\n"
            "      --temp T          sampling temperature, 0..100 (default 0: greedy)\n"
            "      --top-k K         keep the K likeliest tokens (default 0: all)\n"
            "      --top-p P         nucleus sampling mass, (0, 1] (default 1: off)\n"
            "      --seed N          seed of the sampler (default 0): runs are reproducible\n"
            "      --context N       most positions of the conversation, 16..1048576 (default 4096)\n"
            "      --dtype f32|bf16  precision of the weight matrices (default: the checkpoint's)\n"
            "      --threads N       threads (default: TUNA_THREADS or all cores)\n"
            "  -q, --quiet           no timing summary on stderr\n",
            TUNA_CHAT_MAX_IMAGES);
}

static int parse_options(int argc, char **argv, understand_options *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'},      {"tokenizer", required_argument, 0, 't'},
        {"image", required_argument, 0, 'i'},      {"prompt", required_argument, 0, 'p'},
        {"prompt-file", required_argument, 0, 'f'}, {"interactive", no_argument, 0, 'I'},
        {"system", required_argument, 0, 'y'},     {"size", required_argument, 0, 'S'},
        {"width", required_argument, 0, 'W'},      {"height", required_argument, 0, 'H'},
        {"max-tokens", required_argument, 0, 'x'}, {"temp", required_argument, 0, 'T'},
        {"top-k", required_argument, 0, 'k'},      {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 'r'},       {"context", required_argument, 0, 'C'},
        {"threads", required_argument, 0, 'n'},    {"dtype", required_argument, 0, 'd'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *cmd = "understand";
    int c, width = 0, height = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:i:p:f:W:H:qh", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'i':
            if (o->image_count == TUNA_CHAT_MAX_IMAGES) {
                fprintf(stderr, "tuna understand: at most %d images\n", TUNA_CHAT_MAX_IMAGES);
                return 2;
            }
            o->images[o->image_count++] = optarg;
            break;
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'I': o->interactive = 1; break;
        case 'y': o->system = optarg; break;
        case 'S': if (cli_size(cmd, optarg, &o->size.width, &o->size.height, &o->size.native)) return 2; break;
        case 'W': if (cli_int(cmd, "--width", optarg, 1, CLI_MAX_SIDE, &width)) return 2; break;
        case 'H': if (cli_int(cmd, "--height", optarg, 1, CLI_MAX_SIDE, &height)) return 2; break;
        case 'x': if (cli_int(cmd, "--max-tokens", optarg, 1, 65536, &o->max_tokens)) return 2; break;
        case 'T': if (cli_float(cmd, "--temp", optarg, 0, 100, &o->sampling.temperature)) return 2; break;
        case 'k': if (cli_int(cmd, "--top-k", optarg, 0, 1 << 24, &o->sampling.top_k)) return 2; break;
        case 'P': if (cli_float(cmd, "--top-p", optarg, 1e-6, 1, &o->sampling.top_p)) return 2; break;
        case 'r': if (cli_seed(cmd, "--seed", optarg, &o->seed)) return 2; break;
        case 'C': if (cli_int(cmd, "--context", optarg, 16, 1 << 20, &o->context)) return 2; break;
        case 'n': if (cli_int(cmd, "--threads", optarg, 1, 4096, &o->threads)) return 2; break;
        case 'd':
            if (strcmp(optarg, "f32") != 0 && strcmp(optarg, "bf16") != 0) {
                fprintf(stderr, "tuna understand: --dtype '%s': use f32 or bf16\n", optarg);
                return 2;
            }
            o->dtype = optarg;
            break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: fprintf(stderr, "tuna understand: see tuna understand --help\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tuna understand: unexpected argument '%s' (an image is given with -i FILE, a question "
                        "with -p TEXT)\n", argv[optind]);
        return 2;
    }
    if ((width > 0) != (height > 0) || (width > 0 && (o->size.width || o->size.native))) {
        fprintf(stderr, "tuna understand: give the size once, as --size WxH or as both -W and -H\n");
        return 2;
    }
    if (width > 0) o->size.width = width, o->size.height = height;
    if (o->prompt && o->prompt_file) {
        fprintf(stderr, "tuna understand: give -p or -f, not both\n");
        return 2;
    }
    if (!o->prompt && !o->prompt_file && !o->interactive) {
        fprintf(stderr, "tuna understand: -p TEXT, -f FILE or --interactive is required (tuna understand --help)\n");
        return 2;
    }
    if ((o->size.width || o->size.native) && o->image_count == 0) {
        fprintf(stderr, "tuna understand: --size/-W/-H size images: give one with -i FILE\n");
        return 2;
    }
    return -1;
}

static void print_piece(void *ctx, const char *piece, size_t len) {
    (void)ctx;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

/* "<image>\n" for every image, then the text (SPEC section 3). */
static char *user_content(int images, const char *text) {
    size_t n = strlen(text) + (size_t)images * 8 + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    s[0] = '\0';
    for (int k = 0; k < images; k++) strcat(s, "<image>\n");
    strcat(s, text);
    return s;
}

/* The conversation: messages own their text. Grows as needed. */
typedef struct {
    tuna_chat_message *messages;
    int count, capacity;
} conversation;

static void conversation_clear(conversation *c) {
    for (int i = 0; i < c->count; i++) free((char *)c->messages[i].content);
    c->count = 0;
}

static int add_message(conversation *c, tuna_chat_role role, char *owned_text) {
    if (!owned_text) return 1;
    if (c->count == c->capacity) {
        int cap = c->capacity ? 2 * c->capacity : 16;
        tuna_chat_message *grown = realloc(c->messages, sizeof *grown * (size_t)cap);
        if (!grown) {
            free(owned_text);
            return 1;
        }
        c->messages = grown;
        c->capacity = cap;
    }
    c->messages[c->count++] = (tuna_chat_message){role, owned_text};
    return 0;
}

/* Drop the oldest user turn and its reply that carry no image (images belong
 * to the turn that placed them); 1 when one was dropped. */
static int drop_oldest_turn(conversation *c) {
    for (int i = 0; i + 1 < c->count; i++) {
        if (c->messages[i].role != TUNA_ROLE_USER || strstr(c->messages[i].content, "<image>")) continue;
        int n = c->messages[i + 1].role == TUNA_ROLE_ASSISTANT ? 2 : 1;
        if (i + n >= c->count) return 0; /* never the turn being answered */
        for (int k = 0; k < n; k++) free((char *)c->messages[i + k].content);
        memmove(&c->messages[i], &c->messages[i + n], sizeof *c->messages * (size_t)(c->count - i - n));
        c->count -= n;
        return 1;
    }
    return 0;
}

/* Ctrl-C: a signal handler can only set a flag of this type; the decoder
 * reads it through tuna_reply_params.stop. The one piece of global state of
 * the command, and only while an interactive chat runs. */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct {
    const understand_options *o;
    const tuna_model *model;
    const tuna_tokenizer *tok;
    const tuna_threads *pool;
    tuna_chat_session session;
    conversation conv;
    int pending_images; /* images added for the next user turn */
    tuna_rng rng;
    double seconds;
    int tokens;
} chat_state;

static int start_session(chat_state *c) {
    tuna_error err = {0};
    if (tuna_chat_session_init(&c->session, c->model, c->tok, c->o->context, c->pool, &err) != TUNA_OK) {
        fprintf(stderr, "tuna understand: %s\n", err.message);
        return 1;
    }
    c->conv.count = 0;
    if (c->o->system && add_message(&c->conv, TUNA_ROLE_SYSTEM, strdup(c->o->system))) return 1;
    return 0;
}

static int reset_chat(chat_state *c) {
    tuna_chat_session_free(&c->session);
    conversation_clear(&c->conv);
    c->pending_images = 0;
    return start_session(c);
}

static int reply(chat_state *c) {
    const understand_options *o = c->o;
    tuna_reply_params p = {.sampling = o->sampling, .max_tokens = o->max_tokens, .on_text = print_piece,
                           .stop = o->interactive ? &interrupted : NULL};
    for (;;) {
        char *text = NULL;
        int tokens = 0;
        tuna_error err = {0};
        interrupted = 0;
        double start = cli_now();
        tuna_status s = tuna_chat_session_reply(&c->session, c->conv.messages, (size_t)c->conv.count, &p, &c->rng,
                                                &text, &tokens, &err);
        c->seconds += cli_now() - start;
        c->tokens += tokens;
        if (s == TUNA_ERR_LIMIT && o->interactive && drop_oldest_turn(&c->conv)) {
            fprintf(stderr, "[the context is full: the oldest turn was dropped]\n");
            continue;
        }
        if (s != TUNA_OK) {
            free(text);
            fprintf(stderr, "\ntuna understand: %s\n", err.message);
            if (s == TUNA_ERR_LIMIT && o->interactive) {
                fprintf(stderr, "[nothing left to drop: the conversation starts over (a larger --context keeps "
                                "more)]\n");
                return reset_chat(c) ? 1 : 2; /* the session goes on */
            }
            return 1;
        }
        printf("\n");
        if (interrupted) fprintf(stderr, "[stopped]\n");
        fflush(stdout);
        return add_message(&c->conv, TUNA_ROLE_ASSISTANT, text);
    }
}

static int add_image(chat_state *c, const char *path) {
    float *chw = NULL;
    int h, w;
    tuna_error err = {0};
    if (cli_load_image(path, &c->model->config, &c->o->size, &chw, &h, &w, "understand")) return 1;
    int rc = 0;
    if (tuna_chat_session_add_image(&c->session, chw, h, w, &err) != TUNA_OK) {
        fprintf(stderr, "tuna understand: %s\n", err.message);
        rc = 1;
    } else {
        c->pending_images++;
    }
    free(chw);
    return rc;
}

static int user_turn(chat_state *c, const char *text) {
    if (add_message(&c->conv, TUNA_ROLE_USER, user_content(c->pending_images, text))) return 1;
    c->pending_images = 0;
    return reply(c);
}

static void chat_help(void) {
    fprintf(stderr, "  /image PATH  attach an image to your next message\n"
                    "  /reset       forget the conversation and its images\n"
                    "  /quit        leave (also /exit, or end of input)\n"
                    "  /help        this list\n"
                    "  Ctrl-C stops a reply; a line starting with // is sent as text starting with /\n");
}

static int interactive(chat_state *c) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: Ctrl-C at the prompt ends the chat */
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    fprintf(stderr, "(chat: /help for commands, Ctrl-C stops a reply)\n");
    while (rc == 0 || rc == 2) {
        rc = 0;
        fprintf(stderr, "> ");
        interrupted = 0;
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        if (n > MAX_LINE) {
            fprintf(stderr, "[a line of over %d bytes: not sent]\n", MAX_LINE);
            continue;
        }
        if ((size_t)n != strlen(line)) {
            fprintf(stderr, "[a NUL byte in the line: not sent]\n");
            continue;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (!line[0]) continue;
        if (line[0] == '/' && line[1] != '/') {
            char *arg = line + strcspn(line, " \t");
            if (*arg) *arg++ = '\0';
            arg += strspn(arg, " \t");
            if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
            if (!strcmp(line, "/help")) chat_help();
            else if (!strcmp(line, "/reset")) {
                rc = reset_chat(c);
                if (!rc) fprintf(stderr, "[a new conversation]\n");
            } else if (!strcmp(line, "/image")) {
                if (!*arg) fprintf(stderr, "[usage: /image PATH]\n");
                else if (!add_image(c, arg)) fprintf(stderr, "[image attached to your next message]\n");
            } else {
                fprintf(stderr, "[unknown command %s: /help lists them]\n", line);
            }
            continue;
        }
        rc = user_turn(c, line[0] == '/' ? line + 1 : line);
    }
    free(line);
    signal(SIGINT, SIG_DFL);
    return rc == 2 ? 0 : rc;
}

int cli_cmd_understand(int argc, char **argv) {
    understand_options o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 256;
    o.context = 4096;
    o.sampling.top_p = 1.0f;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    char *file_prompt = NULL;
    if (o.prompt_file) {
        tuna_error err = {0};
        size_t size = 0;
        if (tuna_read_file(o.prompt_file, 1 << 20, &file_prompt, &size, &err) != TUNA_OK) {
            fprintf(stderr, "tuna understand: %s\n", err.message);
            return 1;
        }
        if (strlen(file_prompt) != size) {
            fprintf(stderr, "tuna understand: %s holds a NUL byte\n", o.prompt_file);
            free(file_prompt);
            return 1;
        }
        o.prompt = file_prompt;
    }
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    if (cli_load_model(o.model, o.tokenizer, &model, &tok, "understand")) {
        free(file_prompt);
        return 1;
    }
    tuna_threads pool;
    tuna_threads_init(&pool, o.threads);
    chat_state c;
    memset(&c, 0, sizeof c);
    c.o = &o;
    c.model = &model;
    c.tok = tok;
    c.pool = &pool;
    tuna_rng_seed(&c.rng, o.seed);
    rc = cli_apply_dtype(&model, o.dtype, "understand");
    if (!rc) rc = start_session(&c);
    for (int k = 0; !rc && k < o.image_count; k++) rc = add_image(&c, o.images[k]);
    if (!rc && o.prompt) rc = user_turn(&c, o.prompt);
    if (!rc && o.interactive) rc = interactive(&c);
    if (!o.quiet && c.tokens)
        fprintf(stderr, "understand: %d tokens in %.2f s (%.1f tokens/s, prompt included)\n", c.tokens, c.seconds,
                c.seconds > 0 ? c.tokens / c.seconds : 0.0);
    tuna_chat_session_free(&c.session);
    conversation_clear(&c.conv);
    free(c.conv.messages);
    free(file_prompt);
    tuna_tokenizer_free(tok);
    tuna_model_free(&model);
    return rc;
}
