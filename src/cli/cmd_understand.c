/* `tuna understand`: answers about images (or a plain text chat), streamed to
 * stdout token by token; `-i` keeps a conversation going on stdin. */
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "infer/understand.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TURNS 256

typedef struct {
    const char *model, *tokenizer, *prompt, *system, *dtype;
    const char *images[TUNA_CHAT_MAX_IMAGES];
    int image_count, height, width, max_tokens, context, threads, interactive;
    tuna_token_sampling sampling;
    unsigned long long seed;
} understand_options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna understand [-m MODEL] [--image IMG ...] --prompt TEXT [options]\n"
            "       tuna understand [-m MODEL] [--image IMG ...] -i\n\n"
            "The answer is streamed to stdout as it is decoded. Without --image it is a text chat.\n\n"
            "  -m, --model DIR      model directory (default: $TUNA_MODEL or the bundled model)\n"
            "  -t, --tokenizer FILE tokenizer.json (default: the model's, else the bundled one)\n"
            "      --image FILE     an image (repeatable, up to %d); each becomes an <image> of the user turn\n"
            "  -p, --prompt TEXT    the question\n"
            "  -i, --interactive    chat on stdin (/quit or end of input to stop)\n"
            "      --system TEXT    system prompt (default: Qwen's)\n"
            "      --size HxW       image size (default: the nearest bucket of SPEC section 4)\n"
            "      --max-tokens N   longest reply (default 256)\n"
            "      --temp T         sampling temperature (default 0: greedy)\n"
            "      --top-k K        keep the K likeliest tokens (default 0: all)\n"
            "      --top-p P        nucleus sampling mass (default 1: off)\n"
            "      --seed N         seed of the sampler (default 0): runs are reproducible\n"
            "      --context N      most positions of the conversation (default 4096)\n"
            "      --dtype f32|bf16 precision of the weight matrices (default: the checkpoint's;\n"
            "                       f32 widens bf16 weights exactly, bf16 rounds f32 weights)\n"
            "      --threads N      threads (default: TUNA_THREADS or all cores)\n",
            TUNA_CHAT_MAX_IMAGES);
}

static int parse_options(int argc, char **argv, understand_options *o) {
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"tokenizer", required_argument, 0, 't'},
        {"image", required_argument, 0, 'I'}, {"prompt", required_argument, 0, 'p'},
        {"interactive", no_argument, 0, 'i'}, {"system", required_argument, 0, 'y'},
        {"size", required_argument, 0, 'S'},  {"max-tokens", required_argument, 0, 'x'},
        {"temp", required_argument, 0, 'T'},  {"top-k", required_argument, 0, 'k'},
        {"top-p", required_argument, 0, 'P'}, {"seed", required_argument, 0, 'r'},
        {"context", required_argument, 0, 'C'}, {"threads", required_argument, 0, 'n'},
        {"dtype", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:t:p:ih", longs, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 't': o->tokenizer = optarg; break;
        case 'I':
            if (o->image_count == TUNA_CHAT_MAX_IMAGES) {
                fprintf(stderr, "tuna understand: at most %d images\n", TUNA_CHAT_MAX_IMAGES);
                return 2;
            }
            o->images[o->image_count++] = optarg;
            break;
        case 'p': o->prompt = optarg; break;
        case 'i': o->interactive = 1; break;
        case 'y': o->system = optarg; break;
        case 'S':
            if (cli_parse_size(optarg, &o->height, &o->width)) {
                fprintf(stderr, "tuna understand: --size wants HxW\n");
                return 2;
            }
            break;
        case 'x': o->max_tokens = atoi(optarg); break;
        case 'T': o->sampling.temperature = strtof(optarg, NULL); break;
        case 'k': o->sampling.top_k = atoi(optarg); break;
        case 'P': o->sampling.top_p = strtof(optarg, NULL); break;
        case 'r': o->seed = strtoull(optarg, NULL, 10); break;
        case 'C': o->context = atoi(optarg); break;
        case 'n': o->threads = atoi(optarg); break;
        case 'd': o->dtype = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!o->prompt && !o->interactive) {
        fprintf(stderr, "tuna understand: --prompt or -i is required\n");
        usage(stderr);
        return 2;
    }
    if (o->max_tokens < 1 || o->context < 16 || o->context > (1 << 22) || o->sampling.top_p <= 0) {
        fprintf(stderr, "tuna understand: bad --max-tokens, --context or --top-p\n");
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

typedef struct {
    tuna_chat_message messages[2 * MAX_TURNS + 1];
    char *owned[2 * MAX_TURNS + 1];
    int count;
} conversation;

static void conversation_free(conversation *c) {
    for (int i = 0; i < c->count; i++) free(c->owned[i]);
}

static int add_message(conversation *c, tuna_chat_role role, char *owned_text) {
    if (!owned_text || c->count >= 2 * MAX_TURNS + 1) return 1;
    c->owned[c->count] = owned_text;
    c->messages[c->count++] = (tuna_chat_message){role, owned_text};
    return 0;
}

static int one_turn(tuna_chat_session *s, conversation *conv, const understand_options *o, tuna_rng *rng) {
    tuna_reply_params p = {.sampling = o->sampling, .max_tokens = o->max_tokens, .on_text = print_piece};
    char *reply = NULL;
    tuna_error err = {0};
    if (tuna_chat_session_reply(s, conv->messages, (size_t)conv->count, &p, rng, &reply, NULL, &err) != TUNA_OK) {
        fprintf(stderr, "\ntuna understand: %s\n", err.message);
        free(reply);
        return 1;
    }
    printf("\n");
    fflush(stdout);
    return add_message(conv, TUNA_ROLE_ASSISTANT, reply);
}

static int chat(tuna_chat_session *s, const understand_options *o) {
    conversation conv;
    memset(&conv, 0, sizeof conv);
    tuna_rng rng;
    tuna_rng_seed(&rng, o->seed);
    int rc = 0;
    if (o->system) rc = add_message(&conv, TUNA_ROLE_SYSTEM, strdup(o->system));
    if (!rc && o->prompt) {
        rc = add_message(&conv, TUNA_ROLE_USER, user_content(o->image_count, o->prompt));
        if (!rc) rc = one_turn(s, &conv, o, &rng);
    }
    char line[8192];
    while (!rc && o->interactive) {
        fprintf(stderr, "> ");
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "/quit") == 0) break;
        if (!line[0]) continue;
        int first_user_turn = conv.count == (o->system ? 1 : 0);
        rc = add_message(&conv, TUNA_ROLE_USER, user_content(first_user_turn ? o->image_count : 0, line));
        if (rc) fprintf(stderr, "tuna understand: the conversation is too long\n");
        else rc = one_turn(s, &conv, o, &rng);
    }
    conversation_free(&conv);
    return rc;
}

int cli_cmd_understand(int argc, char **argv) {
    understand_options o;
    memset(&o, 0, sizeof o);
    o.max_tokens = 256;
    o.context = 4096;
    o.sampling.top_p = 1.0f;
    int rc = parse_options(argc, argv, &o);
    if (rc >= 0) return rc;
    tuna_model model;
    tuna_tokenizer *tok = NULL;
    if (cli_load_model(o.model, o.tokenizer, &model, &tok, "understand")) return 1;
    if (cli_apply_dtype(&model, o.dtype, "understand")) {
        tuna_model_free(&model);
        tuna_tokenizer_free(tok);
        return 1;
    }
    tuna_threads pool;
    tuna_threads_init(&pool, o.threads);
    tuna_chat_session session;
    tuna_error err = {0};
    rc = tuna_chat_session_init(&session, &model, tok, o.context, &pool, &err) == TUNA_OK ? 0 : 1;
    if (rc) fprintf(stderr, "tuna understand: %s\n", err.message);
    for (int k = 0; !rc && k < o.image_count; k++) {
        float *chw = NULL;
        int h, w;
        rc = cli_load_image(o.images[k], model.config.patch_size, o.height, o.width, &chw, &h, &w, "understand");
        if (!rc && tuna_chat_session_add_image(&session, chw, h, w, &err) != TUNA_OK) {
            fprintf(stderr, "tuna understand: %s\n", err.message);
            rc = 1;
        }
        free(chw);
    }
    if (!rc) rc = chat(&session, &o);
    tuna_chat_session_free(&session);
    tuna_tokenizer_free(tok);
    tuna_model_free(&model);
    return rc;
}
