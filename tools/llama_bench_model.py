#!/usr/bin/env python3
"""The LLM of a Tuna-2 checkpoint as a llama.cpp "qwen2" GGUF, same weights.

    out/venv-gguf/bin/python tools/llama_bench_model.py SRC.gguf TOKENIZER.json OUT.gguf

SRC.gguf is our `tuna quantize --type bf16` (or f32) file of the model; its LLM tensors
(tuna.model.*, tuna.lm_head.weight) are renamed to llama.cpp's qwen2 names, the
matrices kept in their dtype, norms and biases widened to f32 (as llama.cpp's
converter does), and the Qwen2 tokenizer written as ggml's tokenizer.ggml.* arrays.
llama.cpp then runs exactly the weights our engine runs (tools/bench_llama_cpp.sh).
Needs ggml's gguf package (tools/setup_gguf_venv.sh); no torch.
"""
import json
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, tok_path, out = sys.argv[1:]
    r = gguf.GGUFReader(src)
    field = r.fields["tuna2.config"]
    cfg = json.loads(bytes(field.parts[field.data[0]]).decode())
    llm = cfg["llm"]
    tensors = {t.name: t for t in r.tensors}

    w = gguf.GGUFWriter(out, arch="qwen2")
    w.add_name("tuna2-llm")
    w.add_context_length(32768)
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(llm["intermediate_size"])
    w.add_block_count(llm["num_layers"])
    w.add_head_count(llm["num_heads"])
    w.add_head_count_kv(llm["num_kv_heads"])
    w.add_rope_freq_base(llm["rope_theta"])
    w.add_layer_norm_rms_eps(llm["rms_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)

    # tokenizer: byte-level BPE (gpt2 model, qwen2 pre-tokenizer), padded to the embedding rows
    tok = json.load(open(tok_path, encoding="utf-8"))
    vocab = tok["model"]["vocab"]
    added = {a["id"]: a for a in tok["added_tokens"]}
    n_vocab = cfg["vocab_size"]
    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i in added:
            tokens.append(added[i]["content"])
            types.append(gguf.TokenType.CONTROL if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif i in by_id:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(cfg["tokens"]["eos"])
    w.add_pad_token_id(cfg["tokens"]["pad"])
    w.add_bos_token_id(cfg["tokens"]["bos"])
    w.add_add_bos_token(False)

    def put(ours, theirs):
        t = tensors[ours]
        shape = tuple(int(d) for d in reversed(t.shape))
        data = np.asarray(t.data)
        if len(shape) == 1:  # norms and biases in f32
            if t.tensor_type == T.BF16:
                data = (data.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            w.add_tensor(theirs, np.asarray(data, dtype=np.float32).reshape(shape))
        elif t.tensor_type == T.BF16:
            w.add_tensor(theirs, data.view(np.uint16).reshape(shape), raw_dtype=T.BF16)
        elif t.tensor_type == T.F32:
            w.add_tensor(theirs, np.asarray(data, dtype=np.float32).reshape(shape))
        else:
            w.add_tensor(theirs, data, raw_dtype=t.tensor_type)

    put("tuna.model.embed_tokens.weight", "token_embd.weight")
    put("tuna.model.norm.weight", "output_norm.weight")
    put("tuna.lm_head.weight" if "tuna.lm_head.weight" in tensors else "tuna.model.embed_tokens.weight", "output.weight")
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(llm["num_layers"]):
        p = f"tuna.model.layers.{i}."
        put(p + "input_layernorm.weight", f"blk.{i}.attn_norm.weight")
        put(p + "post_attention_layernorm.weight", f"blk.{i}.ffn_norm.weight")
        for ours, theirs in names.items():
            put(p + ours + ".weight", f"blk.{i}.{theirs}.weight")
        for b in ("q", "k", "v"):
            put(p + f"self_attn.{b}_proj.bias", f"blk.{i}.attn_{b}.bias")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out}: qwen2, {llm['num_layers']} layers, vocab {n_vocab}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
