/* libFuzzer: safetensors parsing from memory (and the shard index parser).
 * Any input must give TUNA_OK or an error, never a crash, leak or UB. On
 * success every tensor must lie inside the input. */
#include "io/safetensors.h"
#include "core/tensor.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    tuna_safetensors st;
    if (tuna_safetensors_parse(data, size, NULL, &st, NULL) == TUNA_OK) {
        for (size_t i = 0; i < st.count; i++) {
            const tuna_tensor *t = &st.entries[i].tensor;
            const unsigned char *p = t->data;
            size_t n = tuna_tensor_nbytes(t);
            if (p < data || p + n > data + size) abort();
            if (n) { volatile unsigned char sink = p[0]; sink = p[n - 1]; (void)sink; }
            if (tuna_safetensors_find(&st, st.entries[i].name) != t) {
                /* names are unique, so find must return this entry */
                abort();
            }
        }
        tuna_safetensors_close(&st);
    }
    tuna_safetensors_index index;
    if (tuna_safetensors_index_parse((const char *)data, size, NULL, &index, NULL) == TUNA_OK)
        tuna_safetensors_index_free(&index);
    return 0;
}
