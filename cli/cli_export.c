/* gemmatrain export / convert: write KerasHub presets and Keras LoRA files
 * (models/io/keras_preset.h, models/io/keras_lora.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/io/hf_gemma.h"
#include "models/io/keras_lora.h"
#include "models/io/keras_preset.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/towers4_src.h"
#include "train/config.h"
#include "train/checkpoint.h"
#include "models/io/gguf_export.h"
#include "models/io/gguf_writer.h"
#include "models/io/peft.h"
#include "models/io/vision_hf.h"
#include "models/io/vision_keras.h"
#include "train/loader.h"
#include "train/trainer.h"
#include "train/vision_rows.h"
#include "util/fsutil.h"
#include "util/stagedir.h"

static const char *export_usage =
    "usage: gemmatrain export CONFIG.yaml|CHECKPOINT.h5 --out PATH [--merge-lora | --lora-only] [options] [key=value ...]\n"
    "  From a checkpoint: the run's own config rebuilds the model and the trained tensors are loaded.\n"
    "  Loads model.weights (GGUF or KerasHub preset) and the tokenizer as the config says, and the\n"
    "  LoRA adapters of lora.weights (a Keras .lora.h5 or a PEFT directory) when given, and writes:\n"
    "    (default)     a KerasHub preset directory PATH with the base weights, plus\n"
    "                  PATH/adapter.lora.h5 when there are adapters (Keras: load_lora_weights)\n"
    "    --merge-lora  a preset with the adapters folded into the kernels (W + scale * A B)\n"
    "    --lora-only   only the adapters, to PATH (must end in .lora.h5)\n"
    "    --format hf   a Hugging Face directory instead (config.json, model.safetensors, tokenizer\n"
    "                  files; transformers' AutoModelForCausalLM loads it); adapters need --merge-lora\n"
    "    --format gguf a llama.cpp GGUF file PATH (llama-cli -m PATH; ollama); adapters need --merge-lora;\n"
    "                  --gguf-type f32|f16|bf16|q8_0 for the matrices (default f16)\n"
    "    --format gguf-lora  only the adapters, as llama.cpp's LoRA GGUF (llama-cli --lora PATH)\n"
    "    --format peft only the adapters, as a PEFT directory PATH (adapter_config.json,\n"
    "                  adapter_model.safetensors): PeftModel.from_pretrained(hf_model, PATH) loads it\n"
    "                  onto the --format hf export of the same base\n"
    "  options: --sequence-length N (the preprocessor's, default 1024), --steps N and\n"
    "           --eval-loss X (recorded in metadata.json under \"gemmatrain\"), --bf16 (hf: BF16 weights),\n"
    "           --overwrite (write into an existing PATH; else it is refused)\n";

static const char *convert_usage =
    "usage: gemmatrain convert IN OUT [--format keras|hf|gguf] [--bf16] [--gguf-type T] [--sequence-length N]\n"
    "                 [--overwrite]\n"
    "  IN: a GGUF file, a KerasHub preset directory or a Hugging Face directory;\n"
    "  OUT: a KerasHub preset directory (keras_hub.models.CausalLM.from_preset(OUT) loads it), or\n"
    "  with --format hf a Hugging Face directory (--bf16: BF16 weights), with --format gguf a llama.cpp\n"
    "  GGUF file (--gguf-type f32|f16|bf16|q8_0, default f16). An existing OUT is refused unless\n"
    "  --overwrite.\n";

/* Hugging Face directory out. The tokenizer file: tok_path when given, else tok written as a
 * SentencePiece model to a temporary file (copied as tokenizer.model). */
static int save_hf(const gt_gemma *m, gt_hf_save_opts ho, const gt_tokenizer *tok, const char *tok_path,
                   const char *out, char *err, size_t errn) {
    char tmp[64] = "";
    if (!tok_path || !tok_path[0]) {
        snprintf(tmp, sizeof tmp, "/tmp/gemmatrain-tok-%d.spm", (int)getpid());
        if (gt_tok_save_spm(tok, tmp, err, errn)) return -1;
        tok_path = tmp;
    }
    ho.tokenizer = tok_path;
    int rc = gt_hf_gemma_save(m, out, &ho, err, errn);
    if (tmp[0]) unlink(tmp);
    return rc;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* --gguf-type NAME: 0, or -1 for an unknown name */
static int cli_gguf_type(const char *name, uint32_t *type) {
    static const struct { const char *name; uint32_t type; } t[] = {
        {"f32", GT_GGML_F32}, {"f16", GT_GGML_F16}, {"bf16", GT_GGML_BF16}, {"q8_0", GT_GGML_Q8_0}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(name, t[i].name)) return *type = t[i].type, 0;
    return -1;
}

/* An existing target is replaced only on request: 0, or 1 with the message printed. */
static int refuse_existing(const char *cmd, const char *path, bool overwrite) {
    struct stat sb;
    if (overwrite || stat(path, &sb)) return 0;
    fprintf(stderr, "gemmatrain %s: %s already exists: give --overwrite to replace it, or another path\n", cmd, path);
    return 1;
}

/* Gemma 4's towers of a source model (cli/towers4_src.h), carried into what is written. */
typedef struct gt_towers4 {
    gt_vision4 v;
    gt_audio_enc a;
    bool has_v, has_a, bidir;
} gt_towers4;

static int towers4_of(const char *path, gt_towers4 *t, char *err, size_t errn) {
    memset(t, 0, sizeof *t);
    if (cli_towers4_load(path, &t->v, &t->has_v, &t->a, &t->has_a, err, errn)) return -1;
    t->bidir = t->has_v && cli_towers4_vision_bidir(path);
    return 0;
}

static void towers4_hf(const gt_towers4 *t, gt_hf_save_opts *o) {
    o->vision4 = t->has_v ? &t->v : NULL, o->audio = t->has_a ? &t->a : NULL, o->vision_bidir = t->bidir;
}

static void towers4_preset(const gt_towers4 *t, gt_preset_save_opts *o) {
    o->vision4 = t->has_v ? &t->v : NULL, o->audio = t->has_a ? &t->a : NULL, o->vision_bidir = t->bidir;
}

static const char *towers4_note(const gt_towers4 *t) {
    return t->has_v && t->has_a ? " with the vision and audio towers"
           : t->has_v           ? " with the vision tower"
           : t->has_a           ? " with the audio tower"
                                : "";
}

static void towers4_free(gt_towers4 *t) {
    if (t->has_v) gt_vision4_free(&t->v);
    if (t->has_a) gt_audio_enc_free(&t->a);
    memset(t, 0, sizeof *t);
}

typedef struct export_args {
    const char *src, *out;   /* CONFIG.yaml or CHECKPOINT.h5; where to write (a staged directory) */
    const char *dest;        /* --out, as messages name it */
    bool merge, lora_only, hf, peft, gguf, gguf_lora, bf16, overwrite;
    uint32_t gguf_type;      /* --gguf-type */
    gt_preset_save_opts o;   /* --sequence-length, --steps, --eval-loss */
    gt_vision *enc;          /* Gemma 3's vision encoder of the source, or NULL */
    gt_towers4 t4;           /* Gemma 4's towers of model.weights */
    char **ov;               /* key=value overrides (owned) */
    int nov;
} export_args;

/* A usage error's message (and with_usage, the usage): exit status 2. */
__attribute__((format(printf, 2, 3))) static int bad_usage(bool with_usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gemmatrain export: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", with_usage ? export_usage : "");
    return 2;
}

/* The options and overrides after SRC (argv[1], which getopt sees as the program name): 0 or 2. */
static int parse_export(int argc, char **argv, export_args *a) {
    enum { O_OUT = 256, O_MERGE, O_LORA_ONLY, O_BF16, O_FORMAT, O_SEQ_LEN, O_STEPS, O_EVAL_LOSS, O_GGUF_TYPE,
           O_OVERWRITE };
    static const struct option opts[] = {
        {"out", required_argument, NULL, O_OUT},
        {"overwrite", no_argument, NULL, O_OVERWRITE},
        {"merge-lora", no_argument, NULL, O_MERGE},
        {"lora-only", no_argument, NULL, O_LORA_ONLY},
        {"bf16", no_argument, NULL, O_BF16},
        {"format", required_argument, NULL, O_FORMAT},
        {"sequence-length", required_argument, NULL, O_SEQ_LEN},
        {"steps", required_argument, NULL, O_STEPS},
        {"eval-loss", required_argument, NULL, O_EVAL_LOSS},
        {"gguf-type", required_argument, NULL, O_GGUF_TYPE},
        {NULL, 0, NULL, 0},
    };
    char nb[8], *end;
    cli_getopt_reset();
    int o;
    while ((o = cli_getopt(argc - 1, argv + 1, "-:", opts)) != -1) {
        switch (o) {
        case O_OUT: a->out = a->dest = optarg; break;
        case O_MERGE: a->merge = true; break;
        case O_LORA_ONLY: a->lora_only = true; break;
        case O_BF16: a->bf16 = true; break;
        case O_OVERWRITE: a->overwrite = true; break;
        case O_FORMAT:
            if (strcmp(optarg, "keras") && strcmp(optarg, "hf") && strcmp(optarg, "peft") && strcmp(optarg, "gguf") &&
                strcmp(optarg, "gguf-lora"))
                return bad_usage(false, "--format: expected keras, hf, gguf, gguf-lora or peft, got '%s'", optarg);
            a->hf = !strcmp(optarg, "hf");
            a->peft = !strcmp(optarg, "peft");
            a->gguf = !strcmp(optarg, "gguf");
            a->gguf_lora = !strcmp(optarg, "gguf-lora");
            break;
        case O_GGUF_TYPE:
            if (cli_gguf_type(optarg, &a->gguf_type))
                return bad_usage(false, "--gguf-type: expected f32, f16, bf16 or q8_0, got '%s'", optarg);
            break;
        case O_SEQ_LEN:
            if (cli_parse_i64(optarg, &a->o.sequence_length) || a->o.sequence_length < 1)
                return bad_usage(false, "--sequence-length: expected a positive integer, got '%s'", optarg);
            break;
        case O_STEPS:
            if (cli_parse_i64(optarg, &a->o.prov.steps))
                return bad_usage(false, "--steps: expected an integer >= 0, got '%s'", optarg);
            break;
        case O_EVAL_LOSS:
            a->o.prov.final_eval_loss = strtod(optarg, &end);
            if (end == optarg || *end) return bad_usage(false, "--eval-loss: expected a number, got '%s'", optarg);
            break;
        case 1: a->ov[a->nov++] = optarg; break;
        case ':': return bad_usage(true, "option '%s' needs a value", cli_rejected(argv + 1, nb, sizeof nb));
        default: return bad_usage(true, "unknown option '%s'", cli_rejected(argv + 1, nb, sizeof nb));
        }
    }
    while (optind < argc - 1) a->ov[a->nov++] = argv[1 + optind++]; /* after "--" */
    if (!a->out) return bad_usage(true, "--out PATH is required");
    if (a->merge && a->lora_only) return bad_usage(false, "--merge-lora and --lora-only exclude each other");
    if (a->hf && a->lora_only) return bad_usage(false, "--format hf: --lora-only writes Keras' .lora.h5 only");
    if (a->bf16 && !a->hf) return bad_usage(false, "--bf16 applies to --format hf");
    if ((a->peft || a->gguf_lora) && (a->merge || a->lora_only))
        return bad_usage(false, "--format %s writes the adapters alone: no --merge-lora or --lora-only",
                         a->peft ? "peft" : "gguf-lora");
    if (a->gguf && a->lora_only) return bad_usage(false, "--format gguf: for the adapters alone use --format gguf-lora");
    if (a->lora_only && !ends_with(a->out, ".lora.h5"))
        return bad_usage(false, "--lora-only: --out must end in .lora.h5 (Keras requires it), got '%s'", a->out);
    return 0;
}

/* The model a checkpoint left: the run's own config (plus overrides), then its trained tensors.
 * Exit status 0, 1 or 2 (message in err). */
static int from_checkpoint(export_args *a, gt_config *c, gt_gemma **m, gt_lora **l, gt_tokenizer **tok, char *err,
                           size_t errn) {
    char *yaml = NULL;
    if (gt_ckpt_read_config(a->src, &yaml, err, errn)) return 1;
    gt_config_defaults(c);
    int prc = gt_config_parse_text(yaml, strlen(yaml), a->src, c, err, errn);
    free(yaml);
    for (int i = 0; i < a->nov && !prc; i++) prc = gt_config_override(c, a->ov[i], err, errn);
    if (prc) return 2;
    gt_config_resolve(c);
    int64_t step;
    if (gt_train_restore_mm(c, a->src, m, l, &a->enc, tok, &step, err, errn)) return 1;
    /* Gemma 4's towers are frozen in training: the base's are the run's */
    if ((*m)->cfg.generation == 4 && towers4_of(c->model.weights, &a->t4, err, errn)) return 1;
    /* a run with model.frozen_dtype: bf16 trained on the rounded weights: export those, as fp32 */
    if (gt_gemma_set_frozen_dtype(*m, GT_FROZEN_FP32, err, errn)) return 1;
    if (a->o.prov.steps < 0) a->o.prov.steps = step;
    if ((a->merge || a->lora_only || a->peft || a->gguf_lora) && !*l)
        return snprintf(err, errn, "%s: a full fine-tuning checkpoint has no adapters to %s", a->src,
                        a->merge ? "merge" : "write"), 2;
    return 0;
}

/* The model, tokenizer and lora.weights a config names. Exit status 0, 1 or 2 (message in err). */
static int from_config(export_args *a, gt_config *c, gt_gemma **m, gt_lora **l, gt_tokenizer **tok,
                       char *err, size_t errn) {
    if (gt_config_load_for(a->src, a->ov, a->nov, GT_CFG_EXPORT, c, err, errn)) return 2;
    if ((a->merge || a->lora_only || a->peft || a->gguf_lora) && (!c->lora.enabled || !c->lora.weights[0]))
        return snprintf(err, errn, "%s needs adapters: set lora.weights (and lora.enabled)",
                        a->merge ? "--merge-lora" : a->peft ? "--format peft" : "--lora-only"), 2;
    if (gt_load_model(c->model.weights, false, m, c->tokenizer[0] ? NULL : tok, err, errn)) return 1;
    if (c->tokenizer[0] && gt_tok_load(c->tokenizer, tok, err, errn)) return 1;
    gt_vrows vis; /* the encoder as a run of this config builds it (model.weights, or the shapes and seed) */
    if ((*m)->cfg.generation == 3) {
        if (gt_vrows_build(&vis, *m, c, err, errn)) return 1;
        a->enc = vis.enc, vis.enc = NULL;
        gt_vrows_free(&vis);
    }
    if ((*m)->cfg.generation == 4 && towers4_of(c->model.weights, &a->t4, err, errn)) return 1;
    if (c->lora.enabled && c->lora.weights[0] &&
        (gt_peft_detect(c->lora.weights) ? gt_adapters_open(c->lora.weights, &(*m)->cfg, l, err, errn)
                                         : gt_keras_lora_open_mm(c->lora.weights, &(*m)->cfg, a->enc, l, err, errn)))
        return 1;
    return 0;
}

/* --format hf: one set of weights, the adapters merged in. Exit status (message in err). */
static int write_hf(const export_args *a, const gt_config *c, gt_gemma *m, const gt_tokenizer *tok,
                    const gt_lora *l, char *err, size_t errn) {
    if (l && !a->merge)
        return snprintf(err, errn, "--format hf holds one set of weights: add --merge-lora to fold the adapters in "
                        "(or export them with --format peft)"), 2;
    m->lora = NULL; /* a checkpoint's model has them attached; merged, they must not apply again */
    if (l && gt_gemma_merge_lora(m, l, err, errn)) return 1;
    gt_hf_save_opts ho = {.bf16 = a->bf16, .vision = a->enc};
    towers4_hf(&a->t4, &ho);
    if (save_hf(m, ho, tok, c->tokenizer, a->out, err, errn)) return 1;
    fprintf(stderr, "wrote Hugging Face model %s%s%s\n", a->dest, towers4_note(&a->t4), l ? " (LoRA merged)" : "");
    return 0;
}

/* --format gguf: one set of weights, the adapters merged in. Exit status (message in err). */
static int write_gguf(const export_args *a, gt_gemma *m, const gt_tokenizer *tok, const gt_lora *l, char *err,
                      size_t errn) {
    if (l && !a->merge)
        return snprintf(err, errn, "--format gguf holds one set of weights: add --merge-lora to fold the adapters in "
                        "(or export them with --format gguf-lora)"), 2;
    m->lora = NULL;
    if (l && gt_gemma_merge_lora(m, l, err, errn)) return 1;
    if (gt_gguf_export_model(m, tok, a->out, a->gguf_type, NULL, err, errn)) return 1;
    fprintf(stderr, "wrote GGUF %s%s\n", a->out, l ? " (LoRA merged)" : "");
    return 0;
}

/* The default: a KerasHub preset (adapters beside it in adapter.lora.h5, or merged). */
static int write_preset(export_args *a, const gt_config *c, gt_gemma *m, const gt_tokenizer *tok, gt_lora *l,
                        char *err, size_t errn) {
    a->o.lora = l;
    a->o.merge_lora = a->merge;
    a->o.prov.base_model = c->model.weights;
    a->o.prov.lora = l;
    a->o.vision = a->enc;
    towers4_preset(&a->t4, &a->o);
    if (gt_keras_preset_save(a->out, m, tok, &a->o, err, errn)) return 1;
    const char *cls = m->cfg.generation == 4 ? "Gemma4CausalLM" : m->cfg.generation >= 3 ? "Gemma3CausalLM"
                                                                                         : "GemmaCausalLM";
    fprintf(stderr, "wrote KerasHub preset %s (%s%s)\n", a->dest, cls,
            l ? (a->merge ? ", LoRA merged" : ", LoRA in adapter.lora.h5") : "");
    return 0;
}

/* The directory outputs (PEFT, Hugging Face, preset) staged: a failure leaves nothing under
 * --out (util/stagedir.h). Exit status (message in err). */
static int write_dir(export_args *a, const gt_config *c, gt_gemma *m, const gt_tokenizer *tok, gt_lora *l,
                     char *err, size_t errn) {
    gt_stage st;
    if (gt_stage_open(a->dest, &st, err, errn)) return 1;
    a->out = st.dir;
    int code = a->peft  ? (gt_peft_save(a->out, l, &m->cfg, c->model.weights, err, errn) ? 1 : 0)
               : a->hf ? write_hf(a, c, m, tok, l, err, errn)
                       : write_preset(a, c, m, tok, l, err, errn);
    a->out = a->dest;
    if (code) {
        gt_stage_msg(&st, err, errn);
        gt_stage_abort(&st);
        return code;
    }
    if (a->peft) fprintf(stderr, "wrote PEFT adapter %s (rank %lld)\n", a->dest, (long long)l->rank);
    return gt_stage_commit(&st, err, errn) ? 1 : 0;
}

int cli_export(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(export_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    export_args a = {.src = argv[1], .ov = calloc((size_t)argc, sizeof *a.ov), .gguf_type = GT_GGML_F16};
    a.o.prov.steps = -1;
    a.o.prov.final_eval_loss = NAN;
    if (!a.ov) return fprintf(stderr, "gemmatrain export: out of memory\n"), 1;
    int code = parse_export(argc, argv, &a);
    if (code) {
        free(a.ov);
        return code;
    }
    gt_config c;
    char err[2048];
    gt_gemma *m = NULL;
    gt_tokenizer *tok = NULL;
    gt_lora *l = NULL;
    if (refuse_existing("export", a.out, a.overwrite)) {
        free(a.ov);
        return 1;
    }
    (void)gt_mkdir_parents(a.out, NULL, 0); /* errors surface at the write */
    code = gt_ckpt_sniff(a.src) ? from_checkpoint(&a, &c, &m, &l, &tok, err, sizeof err)
                                : from_config(&a, &c, &m, &l, &tok, err, sizeof err);
    if (!code && a.gguf_lora) {
        code = gt_gguf_export_lora(l, &m->cfg, a.out, err, sizeof err) ? 1 : 0;
        if (!code) fprintf(stderr, "wrote llama.cpp LoRA GGUF %s (rank %lld)\n", a.out, (long long)l->rank);
    } else if (!code && a.gguf) {
        if (a.enc) fprintf(stderr, "note: the GGUF file holds the decoder only (llama.cpp reads Gemma 3's vision tower from an mmproj file)\n");
        code = write_gguf(&a, m, tok, l, err, sizeof err);
    } else if (!code && a.lora_only) {
        code = gt_keras_lora_save_mm(a.out, l, &m->cfg, a.enc, err, sizeof err) ? 1 : 0;
        if (!code) fprintf(stderr, "wrote %s (rank %lld)\n", a.out, (long long)l->rank);
    } else if (!code) { /* a directory: written beside --out, moved into place once whole */
        code = write_dir(&a, &c, m, tok, l, err, sizeof err);
    }
    if (code) fprintf(stderr, "gemmatrain export: %s\n", err);
    gt_lora_free(l);
    gt_vision_free(a.enc);
    towers4_free(&a.t4);
    gt_tok_free(tok);
    gt_gemma_free(m);
    free(a.ov);
    return code;
}

/* The vision encoder of a KerasHub preset or HF directory at path, to go into a KerasHub preset;
 * *v stays NULL for a file (GGUF) or a directory without one. */
static int source_encoder(const char *path, gt_vision **v, char *err, size_t errn) {
    char cfg[4200];
    struct stat sb;
    *v = NULL;
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    if (stat(cfg, &sb)) return 0;
    return gt_keras_preset_detect(path) ? gt_vision_keras_load(path, false, v, err, errn)
                                        : gt_vision_hf_load(path, false, v, err, errn);
}

/* The source's encoders: Gemma 3's, or Gemma 4's towers. */
static int source_encoders(const char *path, const gt_gemma *m, gt_vision **enc, gt_towers4 *t4, char *err,
                           size_t errn) {
    if (m->cfg.generation == 3) return source_encoder(path, enc, err, errn);
    if (m->cfg.generation == 4) return towers4_of(path, t4, err, errn);
    return 0;
}

int cli_convert(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(convert_usage, stdout);
        return 0;
    }
    gt_preset_save_opts o = {0};
    o.prov.steps = -1;
    o.prov.final_eval_loss = NAN;
    enum { O_BF16 = 256, O_FORMAT, O_SEQ_LEN, O_GGUF_TYPE, O_OVERWRITE };
    static const struct option opts[] = {
        {"bf16", no_argument, NULL, O_BF16},
        {"gguf-type", required_argument, NULL, O_GGUF_TYPE},
        {"overwrite", no_argument, NULL, O_OVERWRITE},
        {"format", required_argument, NULL, O_FORMAT},
        {"sequence-length", required_argument, NULL, O_SEQ_LEN},
        {NULL, 0, NULL, 0},
    };
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    bool hf = false, bf16 = false, gguf = false, overwrite = false;
    uint32_t gguf_type = GT_GGML_F16;
    char nb[8];
    cli_getopt_reset();
    int opt;
    while ((opt = cli_getopt(argc, argv, "-:", opts)) != -1) {
        switch (opt) {
        case O_BF16: bf16 = true; break;
        case O_OVERWRITE: overwrite = true; break;
        case O_FORMAT:
            if (strcmp(optarg, "keras") && strcmp(optarg, "hf") && strcmp(optarg, "gguf")) {
                fprintf(stderr, "gemmatrain convert: --format: expected keras, hf or gguf, got '%s'\n", optarg);
                return 2;
            }
            hf = !strcmp(optarg, "hf");
            gguf = !strcmp(optarg, "gguf");
            break;
        case O_GGUF_TYPE:
            if (cli_gguf_type(optarg, &gguf_type)) {
                fprintf(stderr, "gemmatrain convert: --gguf-type: expected f32, f16, bf16 or q8_0, got '%s'\n", optarg);
                return 2;
            }
            break;
        case O_SEQ_LEN:
            if (cli_parse_i64(optarg, &o.sequence_length) || o.sequence_length < 1) {
                fprintf(stderr, "gemmatrain convert: --sequence-length: expected a positive integer, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 1:
            if (npos == 2) {
                fprintf(stderr, "gemmatrain convert: unexpected argument '%s'\n%s", optarg, convert_usage);
                return 2;
            }
            pos[npos++] = optarg;
            break;
        case ':':
            fprintf(stderr, "gemmatrain convert: option '%s' needs a value\n%s", cli_rejected(argv, nb, sizeof nb),
                    convert_usage);
            return 2;
        default:
            fprintf(stderr, "gemmatrain convert: unknown option '%s'\n%s", cli_rejected(argv, nb, sizeof nb),
                    convert_usage);
            return 2;
        }
    }
    for (; optind < argc && npos < 2; optind++) pos[npos++] = argv[optind]; /* after "--" */
    if (optind < argc) {
        fprintf(stderr, "gemmatrain convert: unexpected argument '%s'\n%s", argv[optind], convert_usage);
        return 2;
    }
    if (npos != 2) {
        fputs(convert_usage, stderr);
        return 2;
    }
    if (refuse_existing("convert", pos[1], overwrite)) return 1;
    char err[2048];
    gt_gemma *m;
    gt_tokenizer *tok;
    if (gt_load_model(pos[0], false, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "gemmatrain convert: %s\n", err);
        return 1;
    }
    o.prov.base_model = pos[0];
    gt_vision *enc = NULL;
    gt_towers4 t4 = {0}; /* Gemma 4's towers go into a preset or HF directory (not into GGUF) */
    if (!gguf && source_encoders(pos[0], m, &enc, &t4, err, sizeof err)) {
        fprintf(stderr, "gemmatrain convert: %s\n", err);
        gt_tok_free(tok);
        gt_gemma_free(m);
        return 1;
    }
    o.vision = enc;
    towers4_preset(&t4, &o);
    gt_hf_save_opts ho = {.bf16 = bf16, .vision = enc};
    towers4_hf(&t4, &ho);
    (void)gt_mkdir_parents(pos[1], NULL, 0); /* errors surface at the write */
    gt_stage st = {0}; /* a directory output is staged beside OUT: whole or nothing */
    int rc = gguf ? gt_gguf_export_model(m, tok, pos[1], gguf_type, NULL, err, sizeof err)
             : bf16 && !hf ? (snprintf(err, sizeof err, "--bf16 applies to --format hf"), -1)
             : gt_stage_open(pos[1], &st, err, sizeof err) ? -1
             : hf ? save_hf(m, ho, tok, NULL, st.dir, err, sizeof err)
                  : gt_keras_preset_save(st.dir, m, tok, &o, err, sizeof err);
    if (st.dir) {
        gt_stage_msg(&st, err, sizeof err);
        if (rc) gt_stage_abort(&st);
        else rc = gt_stage_commit(&st, err, sizeof err);
    }
    if (rc) fprintf(stderr, "gemmatrain convert: %s\n", err);
    else fprintf(stderr, "wrote %s %s%s\n", gguf ? "GGUF" : hf ? "Hugging Face model" : "KerasHub preset", pos[1],
                 towers4_note(&t4));
    gt_vision_free(enc);
    towers4_free(&t4);
    gt_tok_free(tok);
    gt_gemma_free(m);
    return rc ? 1 : 0;
}
