/* Positions of the Tuna-2 sequence (SPEC sections 2, 3): the RoPE plans of
 * the LLM and of the flow head for a range of rows. The plan's arrays (len =
 * rows, head_dim) and inv_freq [head_dim/2] are the caller's memory (the
 * graph's workspace). */
#ifndef TUNA_MODEL_POSITIONS_H
#define TUNA_MODEL_POSITIONS_H

#include "model/config.h"
#include "model/sequence.h"
#include "ops/ops.h"

/* LLM: rotate-half RoPE (theta = llm.rope_theta) at the global index, image
 * slots included, for rows [begin, begin + plan->len). */
void tuna_llm_rope_fill(const tuna_config *c, int begin, tuna_rope_plan *plan, float *inv_freq);

/* Head: rows outside every segment get rotate-half RoPE with llama3 scaling at
 * the global index; the t slot of a segment none; patch j of an image the 3D
 * interleaved minus-angle rotation at (0, j / grid_w, j % grid_w). */
void tuna_head_rope_fill(const tuna_config *c, const tuna_sequence *seq, int begin, tuna_rope_plan *plan,
                         float *inv_freq);

#endif
