/* One API over every weights format the engine reads (SPEC section 7).
 *
 *     tuna_checkpoint *ck;
 *     if (tuna_checkpoint_open("weights/", &ck, &err)) ... error ...
 *     const tuna_tensor *w = tuna_checkpoint_find(ck, "tuna.model.norm.weight");
 *     for (size_t i = 0; i < tuna_checkpoint_count(ck); i++)
 *         use(tuna_checkpoint_name(ck, i), tuna_checkpoint_tensor(ck, i));
 *     tuna_checkpoint_close(ck);
 *
 * path may be a file (*.safetensors, *.safetensors.index.json, *.gguf, *.pt,
 * *.pth, *.bin) or a directory holding model.safetensors,
 * model.safetensors.index.json, model.gguf or exactly one *.pt / *.pth / *.bin. Tensors are read-only views (dtype as
 * stored, contiguous), valid until close. Names are unique across shards. */
#ifndef TUNA_IO_CHECKPOINT_H
#define TUNA_IO_CHECKPOINT_H

#include "core/status.h"

typedef struct tuna_checkpoint tuna_checkpoint;

tuna_status tuna_checkpoint_open(const char *path, tuna_checkpoint **out, tuna_error *err);
void tuna_checkpoint_close(tuna_checkpoint *ck);

/* O(log n); NULL when absent. */
const tuna_tensor *tuna_checkpoint_find(const tuna_checkpoint *ck, const char *name);

/* Iteration in name order, i < count. */
size_t tuna_checkpoint_count(const tuna_checkpoint *ck);
const char *tuna_checkpoint_name(const tuna_checkpoint *ck, size_t i);
const tuna_tensor *tuna_checkpoint_tensor(const tuna_checkpoint *ck, size_t i);

/* "safetensors", "safetensors-sharded", "gguf" or "pt". */
const char *tuna_checkpoint_format(const tuna_checkpoint *ck);
/* The directory holding the weights (where config.json is looked for). */
const char *tuna_checkpoint_dir(const tuna_checkpoint *ck);

/* A string of the file's metadata (a GGUF string key/value, a safetensors
 * "__metadata__" entry); NULL when absent. A GGUF model carries its
 * configuration ("tuna2.config", config.json text) and tokenizer
 * ("tokenizer.huggingface.json") this way. Valid until close. */
const char *tuna_checkpoint_metadata(const tuna_checkpoint *ck, const char *key);

#endif
