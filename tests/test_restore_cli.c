/* `tuna restore` end to end on the bundled model: damage a layer and a head
 * block, detect exactly them, restore on a small dataset (loss goes down, OUT
 * is a complete model, the report is there), resume with a larger budget,
 * and refuse bad arguments. Runs the `tuna` binary of the same build. */
#include "test.h"
#include "io/image.h"
#include "model/tuna2.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tuna_bin[4200], dir[256];

/* Run a shell command line; its stdout (and stderr) into out. Exit status. */
static int run(const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", tuna_bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_text(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Four 32x32 images with captions, edits, questions and a text chat: enough
 * for a loss that a few dozen steps can lower. */
static void make_dataset(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/imgs", dir);
    if (system(cmd) != 0) return;
    for (int k = 0; k < 4; k++) {
        tuna_image img;
        if (tuna_image_alloc(&img, 32, 32, NULL) != TUNA_OK) return;
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++)
                for (int c = 0; c < 3; c++)
                    img.rgb[(y * 32 + x) * 3 + c] = (uint8_t)(((x / 8 + y / 8 + k) % 2) ? 40 + 60 * c : 220 - 50 * k);
        char path[512];
        snprintf(path, sizeof path, "%s/imgs/%d.png", dir, k);
        tuna_image_write_png(path, &img, NULL);
        tuna_image_free(&img);
    }
    write_text("t2i.jsonl", "{\"image\": \"imgs/0.png\", \"caption\": \"a red square\"}\n"
                            "{\"image\": \"imgs/1.png\", \"caption\": \"a blue circle\"}\n"
                            "{\"image\": \"imgs/2.png\", \"caption\": \"a green star\"}\n"
                            "{\"image\": \"imgs/3.png\", \"caption\": \"a grey shirt\"}\n");
    write_text("edit.jsonl", "{\"raw_image\": \"imgs/0.png\", \"out_image\": \"imgs/1.png\", \"instruction\": \"swap\"}\n");
    write_text("mmu.jsonl", "{\"image\": \"imgs/1.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
                            "\"<image>\\nWhat is it?\"}, {\"from\": \"gpt\", \"value\": \"A blue circle.\"}]}\n");
    write_text("text.jsonl", "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", "
                             "\"value\": \"Hello!\"}]}\n");
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    return cJSON_Parse(text);
}

static double number(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

TEST(damage_detect_restore_resume) {
    static char out[1 << 16];
    char args[4096], path[512];
    snprintf(args, sizeof args, "restore damage -m models/tuna2-small -o %s/damaged --layers tuna.model.layers.1,diffusion_head_a.2 --rule mixed --seed 4", dir);
    int rc = run(args, out, sizeof out);
    REQUIRE(rc == 0, "damage: exit %d\n%s", rc, out);
    snprintf(args, sizeof args, "restore detect -m %s/damaged --json %s/detect.json", dir, dir);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0, "detect exit %d", rc);
    CHECK(!strncmp(out, "tuna.model.layers.1 ", 20) && strstr(out, "\ndiffusion_head_a.2 ") &&
              !strstr(out, "tuna.model.layers.0") && !strstr(out, "diffusion_head_a.0"),
          "detect printed:\n%s", out);
    rc = run("restore detect -m models/tuna2-small", out, sizeof out);
    CHECK(rc == 0 && out[0] == 0, "a clean model prints nothing (exit %d):\n%s", rc, out);

    const char *keys = "--t2i_jsonl %s/t2i.jsonl --mmu_jsonl %s/mmu.jsonl --edit_jsonl %s/edit.jsonl "
                       "--text_jsonl %s/text.jsonl --buckets 32x32 --t2i_batch_size 2 --probe_samples 8 --threads 1 -q";
    char stream_keys[1400];
    snprintf(stream_keys, sizeof stream_keys, keys, dir, dir, dir, dir);
    snprintf(args, sizeof args, "restore -m %s/damaged -o %s/restored --max_steps 24 %s", dir, dir, stream_keys);
    rc = run(args, out, sizeof out);
    REQUIRE(rc == 0, "restore exit %d\n%s", rc, out);
    snprintf(path, sizeof path, "%s/restored/restore_report.json", dir);
    cJSON *report = read_json(path);
    REQUIRE(report, "no report at %s", path);
    double start = number(report, "probe_loss_start"), end = number(report, "probe_loss_restored");
    double damaged = number(report, "probe_loss_damaged");
    CHECK(end > 0 && end < start, "probe loss %.4f (damaged) -> %.4f (start) -> %.4f", damaged, start, end);
    CHECK(number(report, "steps") == 24, "steps %g", number(report, "steps"));
    const cJSON *restored = cJSON_GetObjectItemCaseSensitive(report, "restored");
    CHECK(cJSON_GetArraySize(restored) == 2, "two units restored");
    /* LLM layer 1: 0.39M, head block 2: 0.62M of the model's 4.4M */
    CHECK(number(report, "trainable_parameters") > 0.9e6 && number(report, "trainable_parameters") < 1.1e6,
          "only the two units train (%g parameters)", number(report, "trainable_parameters"));
    cJSON_Delete(report);

    /* OUT is a complete model: weights, config, tokenizer */
    snprintf(path, sizeof path, "%s/restored", dir);
    tuna_model m;
    tuna_error err = {0};
    CHECK(tuna_model_load(path, &m, &err) == TUNA_OK, "%s", err.message);
    if (err.code == TUNA_OK) tuna_model_free(&m);
    snprintf(path, sizeof path, "%s/restored/tokenizer.json.gz", dir);
    CHECK(access(path, R_OK) == 0, "tokenizer copied");

    /* again with a larger budget: resumes from the checkpoint of step 24 */
    snprintf(args, sizeof args, "restore -m %s/damaged -o %s/restored --max_steps 30 %s", dir, dir, stream_keys);
    rc = run(args, out, sizeof out);
    CHECK(rc == 0, "resume exit %d\n%s", rc, out);
    snprintf(path, sizeof path, "%s/restored/run/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    int lines = 0;
    for (int ch; f && (ch = fgetc(f)) != EOF;) lines += ch == '\n';
    if (f) fclose(f);
    CHECK(lines == 30, "metrics hold 30 steps after the resume (%d)", lines);
}

TEST(bad_arguments_are_refused) {
    static char out[8192];
    CHECK(run("restore detect", out, sizeof out) == 2, "detect without -m");
    CHECK(run("restore detect -m /nonexistent", out, sizeof out) == 1, "missing model");
    CHECK(run("restore damage -m models/tuna2-small -o /tmp/x --layers nope.0", out, sizeof out) == 1 &&
              strstr(out, "nope.0"),
          "unknown unit named: %s", out);
    CHECK(run("restore damage -m models/tuna2-small -o /tmp/x --layers time_embed --rule bogus", out, sizeof out) == 2,
          "unknown rule");
    CHECK(run("restore -m models/tuna2-small -o /tmp/x --max_minutes -3", out, sizeof out) == 2, "negative budget");
    CHECK(run("restore -m models/tuna2-small -o /tmp/x --no-such-key 1", out, sizeof out) == 2, "unknown key");
}

int main(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 1;
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(tuna_bin, sizeof tuna_bin, "%s/../tuna", exe);
    snprintf(dir, sizeof dir, "/tmp/tuna_test_restore_%d", (int)getpid());
    make_dataset();
    RUN(damage_detect_restore_resume);
    RUN(bad_arguments_are_refused);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return test_summary();
}
