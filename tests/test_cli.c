/* The `tuna` command as a careful new user meets it (issue 16): every class of
 * defect tried on several commands. Runs the binary of the same build
 * directory (BUILD/tests/../tuna) with the bundled model, in a scratch
 * directory; each case checks the exit status and what was said or written. */
#include "test.h"
#include "io/image.h"

#include <fcntl.h>
#include <stdarg.h>
#include <libgen.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tuna_bin[4200];
static char dir[64];
static char out_text[1 << 16]; /* stdout + stderr of the last run */

/* Run `tuna ARGS` (stdin from input when given), output captured; the exit status. */
static int run_input(const char *input, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_input(const char *input, const char *fmt, ...) {
    static char args[200000], cmd[210000];
    char in_path[128], out_path[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(in_path, sizeof in_path, "%s/stdin.txt", dir);
    snprintf(out_path, sizeof out_path, "%s/output.txt", dir);
    FILE *f = fopen(in_path, "w");
    if (f) {
        if (input) fputs(input, f);
        fclose(f);
    }
    /* redirections first: an argument list may end in a shell comment */
    snprintf(cmd, sizeof cmd, "timeout 120 '%s' < %s > %s 2>&1 %s", tuna_bin, in_path, out_path, args);
    int status = system(cmd);
    out_text[0] = '\0';
    f = fopen(out_path, "r");
    if (f) {
        size_t n = fread(out_text, 1, sizeof out_text - 1, f);
        out_text[n] = '\0';
        fclose(f);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
#define run(...) run_input(NULL, __VA_ARGS__)

static int has(const char *s) { return strstr(out_text, s) != NULL; }

static void write_image(const char *name, int w, int h) {
    tuna_image img = {0};
    img.width = w;
    img.height = h;
    img.rgb = malloc((size_t)w * h * 3);
    for (long i = 0; i < (long)w * h; i++) {
        img.rgb[3 * i] = (uint8_t)(200 + i % 50), img.rgb[3 * i + 1] = 40, img.rgb[3 * i + 2] = (uint8_t)(i % 7);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    tuna_image_write_png(path, &img, NULL);
    free(img.rgb);
}

TEST(numbers_are_parsed_strictly_with_ranges) {
    const char *cases[][2] = {
        {"generate -p x -o %s/o.png --cfg nan", "--cfg 'nan'"},
        {"generate -p x -o %s/o.png --cfg inf", "--cfg 'inf'"},
        {"generate -p x -o %s/o.png --steps 4294967297", "out of range"},
        {"generate -p x -o %s/o.png --steps 5x", "not an integer"},
        {"generate -p x -o %s/o.png --seed abc", "--seed 'abc'"},
        {"generate -p x -o %s/o.png --seed -1", "--seed '-1'"},
        {"generate -p x -o %s/o.png -n 0", "-n '0'"},
        {"generate -p x -o %s/o.png --size 16384x16384", "out of range"},
        {"generate -p x -o %s/o.png --size 32", "WxH"},
        {"generate -p x -o %s/o.png -W 32", "both -W and -H"},
        {"edit -i x.png -p x -o %s/o.png --strength 1.5", "--strength"},
        {"understand -p x --top-p 5 --max-tokens 1 # %s", "--top-p '5'"},
        {"understand -p x --temp -1 # %s", "--temp"},
        {"understand -p x --context 1e9 # %s", "--context"},
        {"understand -p x --threads 0 # %s", "--threads '0'"},
        {"demo --steps 0 -o %s/d.png", "--steps '0'"},
        {"eval --steps 0 tasks.jsonl # %s", "--steps '0'"},
        {"eval --size 0x32 tasks.jsonl # %s", "--size '0x32'"},
        {"init --config c.json -o %s/i --seed 1.5", "--seed '1.5'"},
        {"plot m.jsonl -o %s/p.png --width many", "--width 'many'"},
        {"forward -m x --in a --out %s/b --threads -2", "--threads '-2'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run(cases[i][0], dir);
        CHECK(rc == 2 && has(cases[i][1]), "tuna %s: exit %d, said: %s", cases[i][0], rc, out_text);
    }
}

TEST(no_argument_is_dropped_silently) {
    const char *cases[][2] = {
        {"understand %s/count.png -p 'How many?'", "unexpected argument"},
        {"demo stray # %s", "unexpected argument"},
        {"version extra # %s", "unexpected argument"},
        {"init --config c.json -o %s/i extra", "unexpected argument"},
        {"forward -m x --in a --out %s/b extra", "unexpected argument"},
        {"generate -p x -o %s/o.png -i source.png", "is not used here"},
        {"generate -p x -o %s/o.png --size native", "is not used here"},
        {"reconstruct -i x.png -p x -o %s/o.png", "is not used here"},
        {"generate -p x -f prompts.txt -o %s/o.png", "is not used here"},
        {"generate -p x -o - -n 2 # %s", "standard output"},
        {"demo -o - # %s", "standard output"},
        {"eval --train-judge tasks.jsonl # %s", "--train-judge takes no task file"},
        {"forward -t 2 -m x --in a --out %s/b", "invalid option"},
        {"understand -p x --bogus # %s", "unrecognized option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run(cases[i][0], dir);
        CHECK(rc == 2 && has(cases[i][1]), "tuna %s: exit %d, said: %s", cases[i][0], rc, out_text);
    }
    /* -t is the tokenizer everywhere, train included */
    int rc = run("train -m models/tuna2-small -o %s/run -t %s/no-such-tokenizer.json --max_steps 1 -q", dir, dir);
    CHECK(rc != 0 && has("no-such-tokenizer.json"), "train -t is the tokenizer: exit %d: %s", rc, out_text);
}

TEST(outputs_are_written_never_replaced_wrongly) {
    struct stat st;
    int rc = run("generate -p 'a red circle' --steps 1 -q -o /dev/null # %s", dir);
    CHECK(rc == 0 && stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode), "-o /dev/null: exit %d, still a device: %s",
          rc, out_text);
    char target[128], link_path[128];
    snprintf(target, sizeof target, "%s/target.png", dir);
    snprintf(link_path, sizeof link_path, "%s/link.png", dir);
    FILE *f = fopen(target, "w");
    if (f) fclose(f);
    CHECK(symlink("target.png", link_path) == 0, "symlink");
    rc = run("generate -p 'a red circle' --steps 1 -q -o %s", link_path);
    CHECK(rc == 0 && lstat(link_path, &st) == 0 && S_ISLNK(st.st_mode), "the symlink stays: exit %d %s", rc, out_text);
    CHECK(stat(target, &st) == 0 && st.st_size > 0, "and its target got the PNG");
    /* -o - : the PNG on standard output, with the parameters in text chunks */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' generate -p 'a blue square' --steps 1 --seed 7 -q -o - > %s/stdout.png", tuna_bin,
             dir);
    CHECK(system(cmd) == 0, "-o -");
    snprintf(cmd, sizeof cmd, "%s/stdout.png", dir);
    f = fopen(cmd, "rb");
    char png[8192] = {0};
    size_t n = f ? fread(png, 1, sizeof png, f) : 0;
    if (f) fclose(f);
    CHECK(n > 8 && memcmp(png, "\x89PNG", 4) == 0, "a PNG on stdout (%zu bytes)", n);
    int found_prompt = 0, found_seed = 0;
    for (size_t i = 0; i + 16 < n; i++) {
        found_prompt |= memcmp(png + i, "a blue square", 13) == 0;
        found_seed |= memcmp(png + i, "seed\0", 5) == 0;
    }
    CHECK(found_prompt && found_seed, "the prompt and seed are recorded in the PNG");
    /* bad outputs are refused before any work */
    rc = run("generate -p x --steps 1 -o %s", dir);
    CHECK(rc == 1 && has("is a directory"), "-o DIR: %d %s", rc, out_text);
    rc = run("generate -p x --steps 1 -o %s/missing/dir/o.png", dir);
    CHECK(rc == 1 && has("does not exist"), "-o in a missing directory: %d %s", rc, out_text);
    rc = run("eval --ground-truth tests/fixtures/eval/tasks.jsonl --json %s/missing/r.json -q", dir);
    CHECK(rc == 1 && has("does not exist"), "eval --json checked before the work: %d %s", rc, out_text);
}

TEST(every_model_directory_written_is_complete) {
    char model_dir[128];
    snprintf(model_dir, sizeof model_dir, "%s/fresh", dir);
    int rc = run("init --config models/tuna2-small/config.json -o %s --seed 3", model_dir);
    CHECK(rc == 0, "init: %d %s", rc, out_text);
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json.gz", model_dir);
    struct stat st;
    CHECK(stat(path, &st) == 0, "init copies the model's tokenizer");
    rc = run("generate -m %s -p 'a red circle' --steps 1 -q -o %s/fresh.png", model_dir, dir);
    CHECK(rc == 0, "the fresh model generates: %d %s", rc, out_text);
    /* a tokenizer that does not fit the vocabulary is refused up front, everywhere */
    rc = run("init --config models/tuna2-small/config.json -o %s/bad -t models/tokenizer/tuna2-tokenizer.json.gz", dir);
    CHECK(rc == 1 && has("vocabulary"), "init with the 151k tokenizer: %d %s", rc, out_text);
    snprintf(path, sizeof path, "%s/bad/model.safetensors", dir);
    CHECK(stat(path, &st) != 0, "and writes nothing");
    rc = run("generate -m models/tuna2-small -t models/tokenizer/tuna2-tokenizer.json.gz -p x --steps 1 -o %s/x.png", dir);
    CHECK(rc == 1 && has("vocabulary is 2048"), "generate: %d %s", rc, out_text);
    rc = run("understand -m models/tuna2-small -t models/tokenizer/tuna2-tokenizer.json.gz -p x # %s", dir);
    CHECK(rc == 1 && has("vocabulary is 2048"), "understand: %d %s", rc, out_text);
    /* a training checkpoint is a complete model too */
    write_image("train.png", 32, 32);
    snprintf(path, sizeof path, "%s/t2i.jsonl", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f, "t2i.jsonl");
    fprintf(f, "{\"image\": \"train.png\", \"caption\": \"a red square\"}\n");
    fclose(f);
    rc = run("train -m %s -o %s/run --max_steps 1 --save_every 1 --t2i_jsonl %s/t2i.jsonl --t2i_weight 1 "
             "--edit_weight 0 --mmu_weight 0 --text_weight 0 --buckets 32x32 --threads 1 -q", model_dir, dir, dir);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/run/checkpoint-00000001/tokenizer.json.gz", dir);
        CHECK(stat(path, &st) == 0, "the checkpoint holds the tokenizer");
        rc = run("understand -m %s/run/checkpoint-00000001 -p hi --max-tokens 2 -q", dir);
        CHECK(rc == 0, "and loads as a model: %d %s", rc, out_text);
    } else {
        CHECK(0, "train: %d %s", rc, out_text);
    }
}

TEST(images_are_resized_to_the_trained_size) {
    write_image("photo.png", 451, 300);
    write_image("dot.png", 1, 1);
    int rc = run("understand -i %s/photo.png -p 'What colour is it?' --max-tokens 4 -q", dir);
    CHECK(rc == 0, "a 451x300 photo: %d %s", rc, out_text);
    rc = run("understand -i %s/dot.png -p 'What colour is it?' --max-tokens 4 -q", dir);
    CHECK(rc == 0, "a 1x1 image: %d %s", rc, out_text);
    rc = run("edit -i %s/photo.png -p 'make it blue' --steps 2 -o %s/edited.png", dir, dir);
    CHECK(rc == 0 && has("32x32"), "edit of a photo at the trained 32x32: %d %s", rc, out_text);
    rc = run("understand -i %s/photo.png --size native -p x --max-tokens 2 -q", dir);
    CHECK(rc == 1 && has("context"), "native size of a photo is too long for the small model: %d %s", rc, out_text);
}

TEST(work_is_limited_before_it_starts) {
    static char prompt[100100];
    memset(prompt, 'a', 100000);
    prompt[100000] = '\0';
    static char args[100400];
    snprintf(args, sizeof args, "generate -p %s -o %%s/big.png --steps 1", prompt);
    int rc = run(args, dir);
    CHECK(rc == 2 && has("over the limit"), "a 100 KB prompt is refused at once: %d", rc);
    rc = run("generate -p x -o %s/big.png --size 4096x4096 --steps 1", dir);
    CHECK(rc == 2 && has("over the limit"), "a huge size is refused at once: %d %.300s", rc, out_text);
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/fifo.png", dir);
    mkfifo(fifo, 0600);
    rc = run("understand -i %s -p x", fifo);
    CHECK(rc == 1 && has("not a regular file"), "a FIFO as an image: refused, not waited on: %d %s", rc, out_text);
    rc = run("understand -p %s --max-tokens 2", prompt);
    CHECK(rc == 1 && has("context"), "a prompt over the context: refused: %d %.200s", rc, out_text);
}

TEST(loading_refuses_weights_the_config_does_not_describe) {
    char model_dir[128], cmd[1024];
    snprintf(model_dir, sizeof model_dir, "%s/fewer", dir);
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && cp models/tuna2-small/model.safetensors models/tuna2-small/tokenizer.json.gz %s/ && "
             "sed 's/\"num_layers\": 4/\"num_layers\": 3/' models/tuna2-small/config.json > %s/config.json",
             model_dir, model_dir, model_dir);
    REQUIRE(system(cmd) == 0, "setup");
    int rc = run("understand -m %s -p hi # ", model_dir);
    CHECK(rc == 1 && has("does not use"), "a config with fewer layers than the weights: %d %s", rc, out_text);
    rc = run("inspect %s --quiet", model_dir);
    CHECK(rc == 1 && has("does not use"), "inspect says so too: %d %s", rc, out_text);
}

TEST(eval_keeps_going_and_keeps_its_report) {
    char tasks[128], json[128];
    snprintf(tasks, sizeof tasks, "%s/tasks.jsonl", dir);
    snprintf(json, sizeof json, "%s/report.json", dir);
    FILE *f = fopen(tasks, "w");
    REQUIRE(f, "tasks");
    fprintf(f, "{\"task\": \"understand\", \"image\": \"%s/photo.png\", \"question\": \"What colour?\", \"answer\": "
               "\"red\", \"type\": \"colour\"}\n"
               "{\"task\": \"understand\", \"image\": \"%s/nothing-here.png\", \"question\": \"What?\", \"answer\": "
               "\"x\", \"type\": \"colour\"}\n"
               "this line is not a task\n"
               "{\"task\": \"understand\", \"image\": \"%s/dot.png\", \"question\": \"What colour?\", \"answer\": "
               "\"red\", \"type\": \"colour\"}\n",
            dir, dir, dir);
    fclose(f);
    write_image("photo.png", 451, 300);
    write_image("dot.png", 1, 1);
    int rc = run("eval %s --json %s -q --max-tokens 4", tasks, json);
    CHECK(rc == 1, "exit 1 when tasks failed: %d", rc);
    CHECK(has("nothing-here.png") && has("line 3") && has("(skipped)"), "each problem named: %s", out_text);
    CHECK(has("colour"), "the report of the tasks that ran is printed: %s", out_text);
    char *text = NULL;
    f = fopen(json, "r");
    if (f) {
        text = calloc(1, 1 << 16);
        if (fread(text, 1, (1 << 16) - 1, f) == 0) text[0] = '\0';
        fclose(f);
    }
    CHECK(text && strstr(text, "\"errors\":\t1,") && strstr(text, "nothing-here.png"), "--json written, with the error: %s",
          text ? text : "(none)");
    free(text);
}

TEST(chat_reads_long_lines_commands_and_context) {
    write_image("photo.png", 451, 300);
    static char input[20000];
    char *p = input;
    p += sprintf(p, "/help\n/image %s/photo.png\nWhat colour is it?\n", dir);
    memset(p, 'b', 10000); /* one 10 KB line: one turn, not two */
    p += 10000;
    p += sprintf(p, "\n/reset\n/bogus\nhello\n");
    int rc = run_input(input, "understand --interactive --max-tokens 3 --context 2048 -q");
    CHECK(rc == 0, "the chat ends cleanly at the end of input: %d %.500s", rc, out_text);
    CHECK(has("/image PATH"), "/help lists the commands");
    CHECK(has("[image attached"), "/image attaches");
    CHECK(has("[a new conversation]"), "/reset starts over");
    CHECK(has("[unknown command /bogus"), "an unknown command is not sent to the model");
    int prompts = 0;
    for (const char *q = out_text; (q = strstr(q, "> ")); q += 2) prompts++;
    CHECK(prompts == 8, "one prompt per line read (7 lines + end): %d", prompts);
    /* a long chat in a small context: the oldest turns give way, the session goes on */
    p = input;
    for (int i = 0; i < 12; i++) p += sprintf(p, "Tell me about the number %d and the shapes you know.\n", i);
    rc = run_input(input, "understand --interactive --max-tokens 8 --context 160 -q");
    CHECK(rc == 0 && has("[the context is full"), "context full: turns dropped, no exit: %d %.300s", rc, out_text);
}

/* tools/setup.sh (the README's first command) in its dry-run mode, as root,
 * as a user with sudo and as a user without: stub id/sudo in front of PATH. */
static int setup_run(const char *stubs, int system_path, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "PATH=%s%s TUNA_SETUP_DRY_RUN=1 /bin/bash tools/setup.sh 2>&1", stubs,
             system_path ? ":/usr/bin:/bin" : "");
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, cap - 1, p) : 0;
    out[n] = '\0';
    int status = p ? pclose(p) : -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void stub(const char *bin, const char *name, const char *body) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", bin, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "#!/bin/sh\n%s\n", body);
        fclose(f);
    }
    chmod(path, 0755);
}

TEST(setup_script_works_as_root_and_with_sudo) {
    char root_bin[128], user_bin[128], sudo_bin[128], out[4096];
    snprintf(root_bin, sizeof root_bin, "%s/root-bin", dir);
    snprintf(user_bin, sizeof user_bin, "%s/user-bin", dir);
    snprintf(sudo_bin, sizeof sudo_bin, "%s/sudo-bin", dir);
    mkdir(root_bin, 0755), mkdir(user_bin, 0755), mkdir(sudo_bin, 0755);
    stub(root_bin, "id", "echo 0");
    stub(user_bin, "id", "echo 1000");
    stub(user_bin, "dirname", "exec /usr/bin/dirname \"$@\""); /* and nothing else: no sudo anywhere */
    stub(sudo_bin, "id", "echo 1000");
    stub(sudo_bin, "sudo", "exec \"$@\"");
    int rc = setup_run(root_bin, 1, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "apt-get install") && !strstr(out, "sudo"), "as root, no sudo: %d %s", rc, out);
    rc = setup_run(sudo_bin, 1, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "sudo apt-get update") && strstr(out, "sudo env DEBIAN_FRONTEND"),
          "as a user with sudo: %d %s", rc, out);
    rc = setup_run(user_bin, 0, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "run this script as root"), "a user without sudo is told what to do: %d %s", rc, out);
}

int main(int argc, char **argv) {
    (void)argc;
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", argv[0]);
    snprintf(tuna_bin, sizeof tuna_bin, "%s/../tuna", dirname(copy));
    snprintf(dir, sizeof dir, "/tmp/tuna_cli_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    write_image("count.png", 32, 32);
    RUN(numbers_are_parsed_strictly_with_ranges);
    RUN(no_argument_is_dropped_silently);
    RUN(outputs_are_written_never_replaced_wrongly);
    RUN(every_model_directory_written_is_complete);
    RUN(images_are_resized_to_the_trained_size);
    RUN(work_is_limited_before_it_starts);
    RUN(loading_refuses_weights_the_config_does_not_describe);
    RUN(eval_keeps_going_and_keeps_its_report);
    RUN(chat_reads_long_lines_commands_and_context);
    RUN(setup_script_works_as_root_and_with_sudo);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!getenv("TUNA_KEEP") && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return test_summary();
}
