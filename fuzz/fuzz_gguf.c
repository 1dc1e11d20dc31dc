/* libFuzzer: GGUF parsing from memory. Any input must give TUNA_OK or an
 * error, never a crash, leak or UB. On success every tensor lies inside the
 * input, is found by its name, and every string value is NUL-terminated at
 * its length. Seeds: fuzz/seeds-gguf (written by tests/test_gguf's writer
 * through `tuna quantize` of the bundled model and by ggml's Python package). */
#include "io/gguf.h"
#include "core/tensor.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    tuna_gguf g;
    if (tuna_gguf_parse(data, size, NULL, &g, NULL) != TUNA_OK) return 0;
    for (size_t i = 0; i < g.count; i++) {
        const tuna_tensor *t = &g.entries[i].tensor;
        const unsigned char *p = t->data;
        size_t n = tuna_tensor_nbytes(t);
        if (n != g.entries[i].nbytes || p < data || p + n > data + size) abort();
        if (n) {
            volatile unsigned char sink = p[0];
            sink = p[n - 1];
            (void)sink;
        }
        if (tuna_gguf_find(&g, g.entries[i].name) != t) abort();
    }
    for (size_t i = 0; i < g.kv_count; i++) {
        const tuna_gguf_kv *kv = &g.kv[i];
        if (kv->type == TUNA_GGUF_STRING && kv->str[kv->str_len] != '\0') abort();
        if (tuna_gguf_get(&g, kv->key) != kv) abort(); /* keys are unique */
    }
    tuna_gguf_close(&g);
    return 0;
}
