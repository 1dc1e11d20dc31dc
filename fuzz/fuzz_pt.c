/* libFuzzer: torch.save archives from memory (zip + restricted unpickler +
 * state-dict extraction), and the unpickler alone on the raw input. On success
 * every tensor must lie inside the input or an owned inflated buffer. */
#include "io/pickle.h"
#include "io/pt.h"
#include "core/tensor.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    tuna_pt pt;
    if (tuna_pt_parse(data, size, NULL, &pt, NULL) == TUNA_OK) {
        for (size_t i = 0; i < pt.count; i++) {
            const tuna_tensor *t = &pt.entries[i].tensor;
            size_t n = tuna_tensor_nbytes(t);
            const unsigned char *p = t->data;
            if (n) { volatile unsigned char sink = p[0]; sink = p[n - 1]; (void)sink; } /* ASan checks the range */
            if (tuna_pt_find(&pt, pt.entries[i].name) == NULL) abort();
        }
        tuna_pt_close(&pt);
    }
    tuna_pickle *pickle;
    const tuna_pk_object *root;
    if (tuna_pickle_load(data, size, &pickle, &root, NULL) == TUNA_OK) tuna_pickle_free(pickle);
    return 0;
}
