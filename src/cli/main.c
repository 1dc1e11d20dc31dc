/* `tuna`: the command-line front end. Dispatches to one subcommand. */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    {"version", cli_cmd_version, "print the version and the CPU kernels in use"},
    {"forward", cli_cmd_forward, "one forward pass with explicit inputs (the SPEC section 9 contract)"},
    {"demo", cli_cmd_demo, "generations and answers of the bundled model, in a few seconds"},
    {"understand", cli_cmd_understand, "answer about images, or chat (--interactive: a chat with /help, /image, /reset)"},
    {"generate", cli_cmd_generate, "text to image"},
    {"edit", cli_cmd_edit, "edit an image by an instruction"},
    {"reconstruct", cli_cmd_reconstruct, "the reference's reconstruction mode, with PSNR and SSIM"},
    {"init", cli_cmd_init, "write a freshly initialised model for training from scratch"},
    {"inspect", cli_cmd_inspect, "list a checkpoint's tensors, parameter counts and configuration"},
    {"tokenize", cli_cmd_tokenize, "text <-> token ids, JSON lines on stdin and stdout"},
    {"train", cli_cmd_train, "train / fine-tune on JSONL streams (resumable checkpoints, metrics.jsonl)"},
    {"restore", cli_cmd_restore, "find the re-initialised layers of a foundation checkpoint and re-learn them"},
    {"plot", cli_cmd_plot, "draw the loss curves of a metrics.jsonl into a PNG"},
    {"bench", cli_cmd_bench, "prefill / decode tokens/s and seconds per generation step of a model (as llama-bench)"},
    {"quantize", cli_cmd_quantize, "write a model as one GGUF file in a quantised type (q8_0, q4_k, q6_k, ...)"},
    {"serve", cli_cmd_serve, "an OpenAI-compatible HTTP server: chat with images, tools, image generation"},
    {"eval", cli_cmd_eval, "measure a model on a task file (understanding, generation, editing, reconstruction)"},
};

static void print_usage(FILE *out) {
    fprintf(out, "usage: tuna COMMAND [options]   (tuna COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nEnvironment: TUNA_THREADS sets the thread count (default: all cores).\n"
                 "Every random choice takes --seed and is reproducible from it.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tuna: unknown command '%s'\n", argv[1]);
    print_usage(stderr);
    return 2;
}
