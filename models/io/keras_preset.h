/* keras_preset.h: KerasHub preset directories (what task.save_to_preset writes and
 * keras_hub.models.CausalLM.from_preset reads), for the Gemma 1, 2, 3 and 4 text decoders.
 *
 * A preset directory holds
 *   config.json      the backbone: GemmaBackbone (Gemma 1, and Gemma 2 through its post-norm,
 *                    soft-cap and sliding-window fields) or Gemma3Backbone
 *   model.weights.h5 the backbone's weights in the Keras 3 layout (layers/<class>[_i]/.../vars/0,
 *                    einsum kernels: query/key/value (N|K, D, H), output (N, H, D), MLP (D, F) and
 *                    (F, D)); float32 written, float32 or bfloat16 read
 *   tokenizer.json, preprocessor.json, task.json (GemmaCausalLM / Gemma3CausalLM), metadata.json
 *   assets/tokenizer/vocabulary.spm (SentencePiece model proto)
 * and, from gemmatrain when unmerged adapters are exported with the model, adapter.lora.h5
 * (models/io/keras_lora.h; Keras: backbone.load_lora_weights(path)).
 * Layout facts: docs/reference/kerashub-training-and-presets.md (d), checked against files
 * keras_hub 0.32 / Keras 3.15 write (tests/fixtures/presets).
 *
 * Save writes every file atomically (temporary file, fsync, rename) into dir, creating it.
 * A config KerasHub cannot express (RoPE bases other than its fixed ones, a sliding pattern
 * other than Gemma 2's 2 or Gemma 3's 6) is an error naming the field.
 * A Gemma3Backbone with a vision encoder is read: its decoder here, the encoder's shapes into
 * cfg.vision and its weights through models/io/vision_keras.h; saving writes the decoder only.
 * Gemma4Backbone (Gemma 4 dense text decoder, docs/gemma4.md) is read and written too: the
 * vision/audio encoders of a multimodal preset are not read here (models/io/towers4_keras.h reads
 * them) but are written with opts.vision4 / opts.audio, the MoE block
 * (enable_moe_block) is read and written (expert bank vars/0-3, router vars/0 and proj),
 * explicit layer_types must follow sliding_window_pattern.
 * config.json keys, their defaults and GemmaBackbone's two-branch intermediate_dim come from the
 * field table (models/gemma_fields.h); the writer keeps each class's get_config() key order.
 * Load reads config.json (jansson), checks every tensor's presence and shape and names the
 * first missing or mismatched one with its HDF5 path; an unknown class or malformed JSON is an
 * error naming the file. Sharded weights (model.weights.json) are not read yet. */
#ifndef GT_KERAS_PRESET_H
#define GT_KERAS_PRESET_H

#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/lora.h"
#include "models/vision.h"
#include "models/vision4.h"
#include "models/audio.h"

/* Where a model came from; written to metadata.json under "gemmatrain". */
typedef struct gt_preset_provenance {
    const char *base_model;   /* path or preset name; NULL: unknown */
    const gt_lora *lora;      /* the adapters' config (rank, alpha, targets); NULL: none */
    bool lora_merged;         /* the adapters are folded into the saved kernels */
    int64_t steps;            /* optimizer steps trained; < 0: unknown */
    double final_eval_loss;   /* NAN: unknown */
} gt_preset_provenance;

typedef struct gt_preset_save_opts {
    const gt_lora *lora;      /* adapters of the model, or NULL */
    bool merge_lora;          /* kernels saved as W + (alpha/r) A B; else W, and with lora
                                 set, the adapters go to dir/adapter.lora.h5 */
    int64_t sequence_length;  /* preprocessor's; 0: 1024 */
    gt_preset_provenance prov;
    const gt_vision *vision;  /* Gemma 3's encoder, or NULL: decoder only; its adapters merged, or with
                                 lora set and merge_lora false, in adapter.lora.h5 */
    const gt_vision4 *vision4;    /* Gemma 4's encoders (models/io/towers4_keras.h), or NULL */
    const gt_audio_enc *audio;
    bool vision_bidir;            /* Gemma 4: use_vision_bidirectional_attention */
} gt_preset_save_opts;

int gt_keras_preset_save(const char *dir, const gt_gemma *m, const gt_tokenizer *tok,
                         const gt_preset_save_opts *opts, char *err, size_t errn);

/* 1 when path is a directory whose config.json names a KerasHub backbone, 0 otherwise. */
int gt_keras_preset_detect(const char *path);
/* Architecture from dir/config.json. */
int gt_keras_preset_config(const char *dir, gt_gemma_config *cfg, char *err, size_t errn);
/* Model (trainable: full fine-tuning gradients) and, when tok is not NULL, the tokenizer from
 * assets/tokenizer/vocabulary.spm. The caller frees both. */
int gt_keras_preset_load(const char *dir, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                         char *err, size_t errn);
/* A frozen model stored as dt (gemma.h) filled a tensor at a time: each matrix rounded or
 * quantised from the one fp32 tensor read, never an fp32 copy of the whole model. */
int gt_keras_preset_load_frozen(const char *dir, gt_frozen_dtype dt, gt_gemma **model, gt_tokenizer **tok,
                                char *err, size_t errn);

#endif
