/* A chat request as token ids, in Qwen2.5's chat template with its tools
 * (SPEC section 3), and the reply text read back into content and tool calls.
 *
 * Template (what Qwen2.5's tokenizer_config chat_template renders):
 *
 *   <|im_start|>system\n{system or the default}[\n\n# Tools\n\n... <tools>\n{tool}...\n</tools>\n\n...]<|im_end|>\n
 *   <|im_start|>user\n{images as "<image>\n"}{text}<|im_end|>\n
 *   <|im_start|>assistant\n{text}<|im_end|>\n                      (a plain reply)
 *   <|im_start|>assistant[\n{text}]\n<tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call><|im_end|>\n
 *   <|im_start|>user\n<tool_response>\n{result}\n</tool_response>[\n<tool_response>...]<|im_end|>\n
 *   <|im_start|>assistant\n                                          (the generation prompt)
 *
 * The control tokens are pushed as ids; the text a client sent is encoded
 * with tuna_tokenizer_encode_plain, so "<|im_start|>" in a message stays
 * characters and never opens a turn. The images of a user message come
 * first, each "<image>\n" (the layout Tuna-2 trains understanding on), then
 * its text; each <image> becomes the image's segment (model/layout.h). */
#ifndef TUNA_SERVE_CHAT_PROMPT_H
#define TUNA_SERVE_CHAT_PROMPT_H

#include "model/tuna2.h"
#include "serve/request.h"
#include "text/tokenizer.h"

/* ids of the conversation with the generation prompt; image k is heights[k] x widths[k]. */
tuna_status tuna_serve_chat_ids(const tuna_model *model, const tuna_tokenizer *tok, const tuna_serve_chat_request *req,
                                const int *heights, const int *widths, tuna_ids *ids, tuna_serve_error *e);

/* The system turn's tools block for these tools (appended after the system text). malloc'd. */
char *tuna_serve_tools_block(const tuna_serve_chat_request *req);

/* A reply read back: text before the first well-formed <tool_call> block
 * (NULL when empty and there are calls) and the calls, arguments as compact JSON. */
typedef struct {
    char *content;
    tuna_serve_tool_call *calls;
    int call_count;
} tuna_serve_reply;

tuna_status tuna_serve_parse_reply(const char *text, int with_tools, tuna_serve_reply *out, tuna_error *err);
void tuna_serve_reply_free(tuna_serve_reply *r);

/* Where the text of a streamed reply must stop being sent as content: the
 * start of "<tool_call>" or of a partial one at the end; len when none. */
size_t tuna_serve_content_end(const char *text, size_t len);

#endif
