/* Positions of the Tuna-2 sequence (SPEC sections 2, 3): the RoPE plans of
 * the LLM and of the flow head for a range of rows. Shared by the inference
 * forward and the training step. */
#ifndef TUNA_MODEL_POSITIONS_H
#define TUNA_MODEL_POSITIONS_H

#include "model/config.h"
#include "model/sequence.h"
#include "ops/ops.h"

/* LLM: rotate-half RoPE (theta = llm.rope_theta) at the global index, image
 * slots included, for rows [begin, begin + rows). */
tuna_status tuna_llm_rope_plan(const tuna_config *c, int begin, int rows, tuna_rope_plan *plan, tuna_error *err);

/* Head: rows outside every segment get rotate-half RoPE with llama3 scaling at
 * the global index; the t slot of a segment none; patch j of an image the 3D
 * interleaved minus-angle rotation at (0, j / grid_w, j % grid_w). */
tuna_status tuna_head_rope_plan(const tuna_config *c, const tuna_sequence *seq, int begin, int rows,
                                tuna_rope_plan *plan, tuna_error *err);

#endif
