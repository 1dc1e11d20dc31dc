/* The `tuna` subcommands. Each lives in its own src/cli/cmd_NAME.c and is
 * listed once in the table in main.c. A command returns the process exit
 * status: 0 on success, 1 on a runtime error, 2 on a usage error. */
#ifndef TUNA_CLI_COMMANDS_H
#define TUNA_CLI_COMMANDS_H

typedef int (*cli_command_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    cli_command_fn run;
    const char *summary;
} cli_command;

int cli_cmd_version(int argc, char **argv);
int cli_cmd_forward(int argc, char **argv);
int cli_cmd_init(int argc, char **argv);
int cli_cmd_demo(int argc, char **argv);
int cli_cmd_generate(int argc, char **argv);
int cli_cmd_edit(int argc, char **argv);
int cli_cmd_reconstruct(int argc, char **argv);
int cli_cmd_understand(int argc, char **argv);
int cli_cmd_inspect(int argc, char **argv);
int cli_cmd_tokenize(int argc, char **argv);
int cli_cmd_train(int argc, char **argv);
int cli_cmd_plot(int argc, char **argv);
int cli_cmd_eval(int argc, char **argv);
int cli_cmd_quantize(int argc, char **argv);
int cli_cmd_bench(int argc, char **argv);
int cli_cmd_serve(int argc, char **argv);
int cli_cmd_restore(int argc, char **argv);

#endif
