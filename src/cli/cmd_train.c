/* `tuna train`: fine-tune (or train) Tuna-2 on the reference's JSONL streams.
 * Options: src/train/train_options.h; the loop: src/train/trainer.h;
 * docs/training.md. */
#include "cli/commands.h"
#include "io/checkpoint.h"
#include "infer/prepare.h"
#include "model/config_json.h"
#include "model/layout.h"
#include "train/train_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: tuna train -m MODEL [--config train.json] [--KEY VALUE ...]\n"
            "\n"
            "Trains from MODEL's weights on up to four JSONL streams mixed by weight (t2i, edit,\n"
            "mmu = understanding, text), writing OUTPUT_DIR/checkpoint-STEP/ (model, ema, optimizer\n"
            "state, data position) every save_every steps and OUTPUT_DIR/metrics.jsonl every step.\n"
            "Started again with the same OUTPUT_DIR it resumes from the latest complete checkpoint.\n"
            "Keys (flags and the JSON config file alike; '-' or '_'):\n"
            "  -c, --config FILE              a flat JSON object of the keys below\n"
            "  -m MODEL, -o OUTPUT_DIR, -t TOKENIZER (default: the model's), --threads N, --no-resume,\n"
            "  -q/--quiet. Every checkpoint is a complete model: weights, config.json (with the image\n"
            "  sizes trained for) and the tokenizer.\n");
    tuna_train_options_print_keys(out);
}

int cli_cmd_train(int argc, char **argv) {
    tuna_train_options o;
    tuna_train_options_default(&o);
    tuna_error err = {0};
    int help = 0, rc = 1;
    if (tuna_train_options_parse(&o, argc, argv, &help, &err) != TUNA_OK) {
        fprintf(stderr, "tuna train: %s\n", err.message);
        tuna_train_options_free(&o);
        return 2;
    }
    if (help) {
        usage(stdout);
        tuna_train_options_free(&o);
        return 0;
    }
    if (!o.model) {
        fprintf(stderr, "tuna train: -m MODEL (or \"model\" in the config) is required\n");
        tuna_train_options_free(&o);
        return 2;
    }

    tuna_checkpoint *ck = NULL;
    tuna_config config;
    tuna_param_table params = {0};
    tuna_tokenizer *tok = NULL;
    tuna_train_model model = {0};
    const char *source = NULL;
    if (tuna_checkpoint_open(o.model, &ck, &err) != TUNA_OK ||
        tuna_config_for_checkpoint(ck, &config, &source, &err) != TUNA_OK ||
        tuna_param_table_from_checkpoint(&params, ck, &err) != TUNA_OK)
        goto fail;
    tuna_checkpoint_close(ck);
    ck = NULL;
    tuna_freeze_rules rules = {o.freeze, o.freeze_count, o.train_only, o.train_only_count};
    if (tuna_param_table_setup_training(&params, &rules, o.trainer.optim.ema_decay > 0, &err) != TUNA_OK) goto fail;
    tuna_param_stats ps = tuna_param_table_stats(&params);
    if (!o.trainer.quiet)
        fprintf(stderr, "model %s (%s): %d tensors, %.3fM parameters, %.3fM trainable in %d tensors, %.1f MiB optimizer state\n",
                o.model, source, ps.tensors, ps.total / 1e6, ps.trainable / 1e6, ps.trainable_tensors,
                ps.state_bytes / 1048576.0);

    /* the model's own tokenizer (or -t), checked against its vocabulary before any work */
    char tok_path[4096], model_dir[4096];
    snprintf(model_dir, sizeof model_dir, "%s", o.model);
    struct stat st;
    if (stat(o.model, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char *slash = strrchr(model_dir, '/');
        if (slash) *slash = '\0';
        else snprintf(model_dir, sizeof model_dir, ".");
    }
    const char *tp = tuna_tokenizer_for_model(o.tokenizer, model_dir, tok_path, sizeof tok_path);
    if (!tp) {
        tuna_fail(&err, TUNA_ERR_IO, "no tokenizer found (give -t FILE)");
        goto fail;
    }
    if (tuna_tokenizer_load(tp, &tok, &err) != TUNA_OK || tuna_tokenizer_check_model(tok, &config, &err) != TUNA_OK) {
        tuna_fail_context(&err, err.code, "%s", tp);
        goto fail;
    }
    o.trainer.tokenizer_path = tp;
    /* the model records the image sizes it is trained for */
    if (o.data.bucket_count > 0) {
        config.image_size_count = o.data.bucket_count;
        for (int k = 0; k < o.data.bucket_count && k < TUNA_CONFIG_MAX_IMAGE_SIZES; k++)
            config.image_sizes[k] = (tuna_image_size){o.data.buckets[k].height, o.data.buckets[k].width};
    } else { /* the data uses the five 512-class buckets */
        const tuna_image_size sizes[5] = {{512, 512}, {448, 576}, {576, 448}, {384, 672}, {672, 384}};
        config.image_size_count = 5;
        memcpy(config.image_sizes, sizes, sizeof sizes);
    }

    tuna_threads threads;
    tuna_threads_init(&threads, o.threads);
    /* The model's loss and gradients: wired in src/train/model_binding.c. */
    if (tuna_train_model_bind(&config, &params, &threads, &model, &err) != TUNA_OK) goto fail;

    o.data.tokenizer = tok;
    o.data.tokens = config.tokens;
    o.data.patch_size = config.patch_size;
    if (!o.data_noise_scale_set) o.data.noise_scale = (float)config.noise_scale;
    o.trainer.threads = &threads;
    tuna_trainer_result result;
    if (tuna_trainer_run(&o.trainer, &params, &model, &o.data, &config, &result, &err) != TUNA_OK) goto fail;
    if (!o.trainer.quiet)
        fprintf(stderr, "done: steps %lld..%lld, last loss %.6g, %lld skipped updates\n", (long long)result.start_step,
                (long long)result.final_step, result.last_loss, (long long)result.skipped_updates);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "tuna train: error: %s\n", err.message);
done:
    if (model.destroy) model.destroy(model.ctx);
    if (ck) tuna_checkpoint_close(ck);
    tuna_tokenizer_free(tok);
    tuna_param_table_free(&params);
    tuna_train_options_free(&o);
    return rc;
}
