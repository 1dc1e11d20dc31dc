/* A reply can be stopped from outside (Ctrl-C in `tuna understand
 * --interactive`): tuna_reply_params.stop, read once per decoded token. */
#include "test.h"
#include "infer/prepare.h"
#include "infer/understand.h"

typedef struct {
    volatile sig_atomic_t stop;
    int pieces;
} stopper;

static void stop_after_first(void *ctx, const char *piece, size_t len) {
    (void)piece;
    (void)len;
    stopper *s = ctx;
    s->pieces++;
    s->stop = 1;
}

TEST(a_set_flag_stops_the_reply) {
    tuna_model m;
    tuna_tokenizer *tok = NULL;
    tuna_error err = {0};
    REQUIRE(tuna_load_model_and_tokenizer("models/tuna2-small", NULL, &m, &tok, &err) == TUNA_OK, "%s", err.message);
    tuna_threads pool;
    tuna_threads_init(&pool, 1);
    tuna_chat_session s;
    REQUIRE(tuna_chat_session_init(&s, &m, tok, 512, &pool, &err) == TUNA_OK, "%s", err.message);
    tuna_chat_message msg = {TUNA_ROLE_USER, "Tell me a long story about shapes and colours."};
    stopper st = {0, 0};
    /* the sampler at a high temperature rarely picks the stop token: without the flag the reply runs long */
    tuna_reply_params p = {.sampling = {.temperature = 50.0f, .top_p = 1.0f}, .max_tokens = 200,
                           .on_text = stop_after_first, .on_text_ctx = &st, .stop = &st.stop};
    tuna_rng rng;
    tuna_rng_seed(&rng, 3);
    char *reply = NULL;
    int tokens = 0;
    CHECK(tuna_chat_session_reply(&s, &msg, 1, &p, &rng, &reply, &tokens, &err) == TUNA_OK, "%s", err.message);
    CHECK(tokens >= 1 && tokens <= 4, "stopped right after the flag was set: %d tokens", tokens);
    free(reply);
    st.stop = 1; /* already set: nothing is decoded */
    CHECK(tuna_chat_session_reply(&s, &msg, 1, &p, &rng, &reply, &tokens, &err) == TUNA_OK && tokens == 0,
          "a flag set before the reply: %d tokens", tokens);
    free(reply);
    st.stop = 0;
    p.on_text = NULL;
    CHECK(tuna_chat_session_reply(&s, &msg, 1, &p, &rng, &reply, &tokens, &err) == TUNA_OK && tokens > 4,
          "without the flag the reply goes on: %d tokens", tokens);
    free(reply);
    tuna_chat_session_free(&s);
    tuna_tokenizer_free(tok);
    tuna_model_free(&m);
}

int main(void) {
    RUN(a_set_flag_stops_the_reply);
    return test_summary();
}
