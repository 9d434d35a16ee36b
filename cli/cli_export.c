/* gemmatrain export / convert: write KerasHub presets and Keras LoRA files
 * (models/keras_preset.h, models/keras_lora.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/hf_gemma.h"
#include "models/keras_lora.h"
#include "models/keras_preset.h"
#include "cli/cli.h"
#include "train/config.h"
#include "train/checkpoint.h"
#include "train/loader.h"
#include "train/trainer.h"
#include "util/fsutil.h"

static const char *export_usage =
    "usage: gemmatrain export CONFIG.yaml|CHECKPOINT.h5 --out PATH [--merge-lora | --lora-only] [options] [key=value ...]\n"
    "  From a checkpoint: the run's own config rebuilds the model and the trained tensors are loaded.\n"
    "  Loads model.weights (GGUF or KerasHub preset) and the tokenizer as the config says, and the\n"
    "  LoRA adapters of lora.weights (a Keras .lora.h5) when given, and writes:\n"
    "    (default)     a KerasHub preset directory PATH with the base weights, plus\n"
    "                  PATH/adapter.lora.h5 when there are adapters (Keras: load_lora_weights)\n"
    "    --merge-lora  a preset with the adapters folded into the kernels (W + scale * A B)\n"
    "    --lora-only   only the adapters, to PATH (must end in .lora.h5)\n"
    "    --format hf   a Hugging Face directory instead (config.json, model.safetensors, tokenizer\n"
    "                  files; transformers' AutoModelForCausalLM loads it); adapters need --merge-lora\n"
    "  options: --sequence-length N (the preprocessor's, default 1024), --steps N and\n"
    "           --eval-loss X (recorded in metadata.json under \"gemmatrain\"), --bf16 (hf: BF16 weights)\n";

static const char *convert_usage =
    "usage: gemmatrain convert IN OUT [--format keras|hf] [--bf16] [--sequence-length N]\n"
    "  IN: a GGUF file, a KerasHub preset directory or a Hugging Face directory;\n"
    "  OUT: a KerasHub preset directory (keras_hub.models.CausalLM.from_preset(OUT) loads it), or\n"
    "  with --format hf a Hugging Face directory (--bf16: BF16 weights).\n";

/* Hugging Face directory out. The tokenizer file: tok_path when given, else tok written as a
 * SentencePiece model to a temporary file (copied as tokenizer.model). */
static int save_hf(const gt_gemma *m, const gt_tokenizer *tok, const char *tok_path, const char *out, bool bf16,
                   char *err, size_t errn) {
    char tmp[64] = "";
    if (!tok_path || !tok_path[0]) {
        snprintf(tmp, sizeof tmp, "/tmp/gemmatrain-tok-%d.spm", (int)getpid());
        if (gt_tok_save_spm(tok, tmp, err, errn)) return -1;
        tok_path = tmp;
    }
    gt_hf_save_opts ho = {.bf16 = bf16, .tokenizer = tok_path};
    int rc = gt_hf_gemma_save(m, out, &ho, err, errn);
    if (tmp[0]) unlink(tmp);
    return rc;
}

/* gt_config_load without the training-only checks (data.train is not needed to export). */
static int load_config(const char *path, char *const *ov, int nov, gt_config *c, char *err, size_t errn) {
    gt_config_defaults(c);
    FILE *f = fopen(path, "rb");
    if (!f) return snprintf(err, errn, "%s: %s", path, strerror(errno)), -1;
    char *text = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                return snprintf(err, errn, "%s: out of memory", path), -1;
            }
            text = t;
        }
        got = fread(text + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    fclose(f);
    int rc = gt_config_parse_text(text ? text : "", len, path, c, err, errn);
    free(text);
    for (int i = 0; i < nov && !rc; i++) rc = gt_config_override(c, ov[i], err, errn);
    if (rc) return rc;
    gt_config_resolve(c);
    if (!c->model.weights[0]) return snprintf(err, errn, "%s: model.weights: required for export (the model to write)", path), -1;
    return 0;
}

/* An HDF5 file (signature at offset 0): a training checkpoint. */
static bool is_checkpoint(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8];
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t got = fread(b, 1, 8, f);
    fclose(f);
    return got == 8 && !memcmp(b, sig, 8);
}

static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int cli_export(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(export_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *out = NULL;
    bool merge = false, lora_only = false, hf = false, bf16 = false;
    gt_preset_save_opts o = {0};
    o.prov.steps = -1;
    o.prov.final_eval_loss = NAN;
    char **ov = calloc((size_t)argc, sizeof *ov);
    if (!ov) return fprintf(stderr, "gemmatrain export: out of memory\n"), 1;
    int nov = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if (!strcmp(a, "--out") && has_next) out = argv[++i];
        else if (!strncmp(a, "--out=", 6)) out = a + 6;
        else if (!strcmp(a, "--merge-lora")) merge = true;
        else if (!strcmp(a, "--lora-only")) lora_only = true;
        else if (!strcmp(a, "--bf16")) bf16 = true;
        else if ((!strcmp(a, "--format") && has_next) || !strncmp(a, "--format=", 9)) {
            const char *f = a[8] == '=' ? a + 9 : argv[++i];
            if (strcmp(f, "keras") && strcmp(f, "hf")) {
                fprintf(stderr, "gemmatrain export: --format: expected keras or hf, got '%s'\n", f);
                free(ov);
                return 2;
            }
            hf = !strcmp(f, "hf");
        } else if (!strcmp(a, "--sequence-length") && has_next) {
            if (parse_i64(argv[++i], &o.sequence_length) || o.sequence_length < 1) {
                fprintf(stderr, "gemmatrain export: --sequence-length: expected a positive integer, got '%s'\n", argv[i]);
                free(ov);
                return 2;
            }
        } else if (!strcmp(a, "--steps") && has_next) {
            if (parse_i64(argv[++i], &o.prov.steps)) {
                fprintf(stderr, "gemmatrain export: --steps: expected an integer >= 0, got '%s'\n", argv[i]);
                free(ov);
                return 2;
            }
        } else if (!strcmp(a, "--eval-loss") && has_next) {
            char *end;
            o.prov.final_eval_loss = strtod(argv[++i], &end);
            if (end == argv[i] || *end) {
                fprintf(stderr, "gemmatrain export: --eval-loss: expected a number, got '%s'\n", argv[i]);
                free(ov);
                return 2;
            }
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "gemmatrain export: unknown option '%s'\n%s", a, export_usage);
            free(ov);
            return 2;
        } else {
            ov[nov++] = argv[i];
        }
    }
    int code = 2;
    if (!out) fprintf(stderr, "gemmatrain export: --out PATH is required\n%s", export_usage);
    else if (merge && lora_only) fprintf(stderr, "gemmatrain export: --merge-lora and --lora-only exclude each other\n");
    else if (hf && lora_only) fprintf(stderr, "gemmatrain export: --format hf: --lora-only writes Keras' .lora.h5 only\n");
    else if (bf16 && !hf) fprintf(stderr, "gemmatrain export: --bf16 applies to --format hf\n");
    else if (lora_only && !ends_with(out, ".lora.h5"))
        fprintf(stderr, "gemmatrain export: --lora-only: --out must end in .lora.h5 (Keras requires it), got '%s'\n", out);
    else code = 0;
    if (code) {
        free(ov);
        return code;
    }
    gt_config c;
    char err[2048];
    gt_gemma *m = NULL;
    gt_tokenizer *tok = NULL;
    gt_lora *l = NULL;
    code = 1;
    (void)gt_mkdir_parents(out, NULL, 0); /* errors surface at the write */
    if (is_checkpoint(argv[1])) { /* the run's own config, then its trained tensors */
        char *yaml = NULL;
        if (gt_ckpt_read_config(argv[1], &yaml, err, sizeof err)) goto done;
        gt_config_defaults(&c);
        int prc = gt_config_parse_text(yaml, strlen(yaml), argv[1], &c, err, sizeof err);
        free(yaml);
        for (int i = 0; i < nov && !prc; i++) prc = gt_config_override(&c, ov[i], err, sizeof err);
        if (prc) {
            code = 2;
            goto done;
        }
        gt_config_resolve(&c);
        int64_t step;
        if (gt_train_restore(&c, argv[1], &m, &l, &tok, &step, err, sizeof err)) goto done;
        /* a run with model.frozen_dtype: bf16 trained on the rounded weights: export those, as fp32 */
        if (gt_gemma_set_frozen_dtype(m, GT_FROZEN_FP32, err, sizeof err)) goto done;
        if (o.prov.steps < 0) o.prov.steps = step;
        if ((merge || lora_only) && !l) {
            snprintf(err, sizeof err, "%s: a full fine-tuning checkpoint has no adapters to %s", argv[1],
                     merge ? "merge" : "write");
            code = 2;
            goto done;
        }
    } else {
        if (load_config(argv[1], ov, nov, &c, err, sizeof err)) {
            code = 2;
            goto done;
        }
        if ((merge || lora_only) && (!c.lora.enabled || !c.lora.weights[0])) {
            snprintf(err, sizeof err, "%s needs adapters: set lora.weights (and lora.enabled)",
                     merge ? "--merge-lora" : "--lora-only");
            code = 2;
            goto done;
        }
        if (gt_load_model(c.model.weights, false, &m, c.tokenizer[0] ? NULL : &tok, err, sizeof err)) goto done;
        if (c.tokenizer[0] && gt_tok_load(c.tokenizer, &tok, err, sizeof err)) goto done;
        if (c.lora.enabled && c.lora.weights[0] &&
            gt_keras_lora_open(c.lora.weights, &m->cfg, &l, err, sizeof err))
            goto done;
    }
    if (lora_only) {
        if (gt_keras_lora_save(out, l, &m->cfg, err, sizeof err)) goto done;
        fprintf(stderr, "wrote %s (rank %lld)\n", out, (long long)l->rank);
        code = 0;
        goto done;
    }
    if (hf) {
        if (l && !merge) {
            snprintf(err, sizeof err, "--format hf holds one set of weights: add --merge-lora to fold the adapters in");
            code = 2;
            goto done;
        }
        m->lora = NULL; /* a checkpoint's model has them attached; merged, they must not apply again */
        if (l && gt_gemma_merge_lora(m, l, err, sizeof err)) goto done;
        if (save_hf(m, tok, c.tokenizer, out, bf16, err, sizeof err)) goto done;
        fprintf(stderr, "wrote Hugging Face model %s%s\n", out, l ? " (LoRA merged)" : "");
        code = 0;
        goto done;
    }
    o.lora = l;
    o.merge_lora = merge;
    o.prov.base_model = c.model.weights;
    o.prov.lora = l;
    if (gt_keras_preset_save(out, m, tok, &o, err, sizeof err)) goto done;
    fprintf(stderr, "wrote KerasHub preset %s (%s%s)\n", out, m->cfg.generation == 4 ? "Gemma4CausalLM" : m->cfg.generation >= 3 ? "Gemma3CausalLM" : "GemmaCausalLM",
            l ? (merge ? ", LoRA merged" : ", LoRA in adapter.lora.h5") : "");
    code = 0;
done:
    if (code) fprintf(stderr, "gemmatrain export: %s\n", err);
    gt_lora_free(l);
    gt_tok_free(tok);
    gt_gemma_free(m);
    free(ov);
    return code;
}

int cli_convert(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(convert_usage, stdout);
        return 0;
    }
    gt_preset_save_opts o = {0};
    o.prov.steps = -1;
    o.prov.final_eval_loss = NAN;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    bool hf = false, bf16 = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bf16")) {
            bf16 = true;
        } else if (!strcmp(argv[i], "--format") && i + 1 < argc) {
            const char *f = argv[++i];
            if (strcmp(f, "keras") && strcmp(f, "hf")) {
                fprintf(stderr, "gemmatrain convert: --format: expected keras or hf, got '%s'\n", f);
                return 2;
            }
            hf = !strcmp(f, "hf");
        } else if (!strcmp(argv[i], "--sequence-length") && i + 1 < argc) {
            if (parse_i64(argv[++i], &o.sequence_length) || o.sequence_length < 1) {
                fprintf(stderr, "gemmatrain convert: --sequence-length: expected a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "gemmatrain convert: unknown option '%s'\n%s", argv[i], convert_usage);
            return 2;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "gemmatrain convert: unexpected argument '%s'\n%s", argv[i], convert_usage);
            return 2;
        }
    }
    if (npos != 2) {
        fputs(convert_usage, stderr);
        return 2;
    }
    char err[2048];
    gt_gemma *m;
    gt_tokenizer *tok;
    if (gt_load_model(pos[0], false, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "gemmatrain convert: %s\n", err);
        return 1;
    }
    o.prov.base_model = pos[0];
    (void)gt_mkdir_parents(pos[1], NULL, 0); /* errors surface at the write */
    int rc = hf ? save_hf(m, tok, NULL, pos[1], bf16, err, sizeof err)
                : bf16 ? (snprintf(err, sizeof err, "--bf16 applies to --format hf"), -1)
                       : gt_keras_preset_save(pos[1], m, tok, &o, err, sizeof err);
    if (rc) fprintf(stderr, "gemmatrain convert: %s\n", err);
    else fprintf(stderr, "wrote %s %s\n", hf ? "Hugging Face model" : "KerasHub preset", pos[1]);
    gt_tok_free(tok);
    gt_gemma_free(m);
    return rc ? 1 : 0;
}
