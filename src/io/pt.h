/* PyTorch .pt / .pth / .bin files as written by torch.save(state_dict) (the
 * zip format of torch >= 1.6): ARCHIVE/data.pkl (the pickle), ARCHIVE/data/KEY
 * (one member per storage), ARCHIVE/byteorder, ARCHIVE/version.
 *
 * Loading yields a flat list of named tensors. Training checkpoints
 * {"model": state_dict, "step": ..., "optimizer": ...} (or {"state_dict": ...})
 * are unwrapped to the model part, and the prefix "tuna_model." is stripped
 * (SPEC section 7). Only contiguous tensors inside their storage are accepted.
 * Tensors from stored members are views into the mapping; from deflated
 * members, views into buffers this object owns. The legacy (pre-1.6) tar/raw
 * pickle format is refused. */
#ifndef TUNA_IO_PT_H
#define TUNA_IO_PT_H

#include "core/mapped_file.h"
#include "core/status.h"
#include "io/zip.h"

typedef struct {
    char *name;           /* owned; after unwrapping and prefix stripping */
    tuna_tensor tensor;   /* read-only view */
} tuna_pt_entry;

typedef struct {
    tuna_mapped_file file;   /* empty when parsed from memory */
    tuna_zip zip;
    tuna_pt_entry *entries;  /* sorted by name */
    size_t count;
    void **owned;            /* inflated members */
    size_t owned_count;
    int unwrapped;           /* 1 if a {"model"/"state_dict": ...} wrapper was removed */
    int prefix_stripped;     /* 1 if "tuna_model." was stripped */
} tuna_pt;

#define TUNA_PT_MAX_PICKLE ((uint64_t)1 << 30)   /* data.pkl larger than this is refused */

tuna_status tuna_pt_parse(const void *data, size_t size, const char *what, tuna_pt *pt, tuna_error *err);
tuna_status tuna_pt_open(const char *path, tuna_pt *pt, tuna_error *err);
void tuna_pt_close(tuna_pt *pt);
const tuna_tensor *tuna_pt_find(const tuna_pt *pt, const char *name);

#endif
