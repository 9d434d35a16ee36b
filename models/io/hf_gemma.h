/* hf_gemma.h: Gemma 1/2/3 models in Hugging Face format (config.json + safetensors), and Gemma 4
 * on load (Gemma4ForCausalLM, or the text model of Gemma4ForConditionalGeneration: per_layer_config
 * or global_head_dim / num_global_key_value_heads with attention_k_eq_v, proportional RoPE on
 * full-attention layers, per-layer embeddings, kv sharing, layer_scalar, the MoE block; HF Gemma 4
 * norms are plain multipliers like ours). Gemma 4 is saved as Gemma4ForCausalLM (per_layer_config,
 * attention_k_eq_v, proportional RoPE, [1] layer scalars, experts.gate_up_proj joined from our
 * gate and up); a sliding last layer or an attention
 * soft-cap, which transformers cannot express, is refused. Keys and class defaults come from the
 * field table (models/gemma_fields.h).
 *
 * Load: config.json names the architecture (GemmaForCausalLM, Gemma2ForCausalLM,
 * Gemma3ForCausalLM, or the text part of Gemma3ForConditionalGeneration; without
 * "architectures", model_type gemma / gemma2 / gemma3_text / gemma3). Fields missing from the
 * file take transformers' defaults for that class (HF writes sub-configs as a diff against them).
 * Both config styles are read: transformers 5 (rope_parameters, per layer type for Gemma 3;
 * layer_types) and 4.x (rope_theta, rope_scaling, rope_local_base_freq, sliding_window_pattern).
 * Mapping onto gt_gemma_config:
 *   hidden_size D, intermediate_size F, num_attention_heads N, num_key_value_heads K, head_dim H,
 *   rms_norm_eps, max_position_embeddings -> max_seq_len;
 *   query_pre_attn_scalar: H -> query_head_dim_normalize, D/N -> not (other values: error);
 *     kerashub_query_scaling is false (HF honours the scalar, e.g. the 27B models);
 *   layer_types (or the class's pattern) -> sliding_pattern P (layer i local iff i % P < P - 1;
 *     a list that no P reproduces is an error), sliding_window -> sliding_window;
 *   attn_logit_softcapping / final_logit_softcapping (null = 0);
 *   RoPE: Gemma 1/2 one theta (and linear factor) for all layers; Gemma 3 full_attention ->
 *     global base/scale, sliding_attention -> local; rope types other than default and linear,
 *     attention_bias, bidirectional attention, activations other than gelu_pytorch_tanh (Gemma 1's
 *     legacy "gelu" means the same, as transformers itself decides) and an lm_head that differs
 *     from embed_tokens are errors.
 * Weights (F32, F16 or BF16, one file or shards through model.safetensors.index.json) are
 * stored (out, in) like ours; HF norm weights hold w of (1 + w), the same numbers as KerasHub, so
 * nothing is transformed. HF Gemma 1's post_attention_layernorm is our pre_ffw_norm. A missing
 * tensor, a wrong shape, or an unexpected tensor under the text model's prefix is an error
 * naming it; Gemma 3 vision tensors are ignored.
 *
 * Save: config.json (transformers 5 keys plus the 4.x ones for older readers),
 * generation_config.json and model.safetensors (F32 or BF16, tied head not stored,
 * {"format": "pt"} metadata), every file written atomically; optionally the tokenizer (see
 * gt_hf_save_opts). Gemma 3 is written as Gemma3ForCausalLM, or with gt_hf_save_opts.vision as
 * Gemma3ForConditionalGeneration. Configs that the HF
 * class for the generation cannot express (e.g. Gemma 1 with soft-caps) are refused. */
#ifndef GT_HF_GEMMA_H
#define GT_HF_GEMMA_H

#include "models/gemma.h"
#include "models/audio.h"
#include "models/vision.h"
#include "models/vision4.h"

/* Parse dir/config.json (or a config.json path). arch (may be NULL) gets the architecture. */
int gt_hf_gemma_config(const char *path, gt_gemma_config *cfg, char *arch, size_t archn, char *err,
                       size_t errn);
/* Load config and weights from an HF model directory. */
int gt_hf_gemma_load(const char *dir, bool trainable, gt_gemma **out, char *err, size_t errn);

typedef struct gt_hf_save_opts {
    bool bf16;             /* weights as BF16 instead of F32 */
    /* NULL, or a tokenizer.json or SentencePiece .model/.spm file: copied as tokenizer.json or
     * tokenizer.model; tokenizer_config.json and special_tokens_map.json beside it are copied
     * too, else a minimal tokenizer_config.json (GemmaTokenizer, its special tokens) is
     * written. Its bos/eos/pad ids (which must be < vocab_size; the piece list itself may be
     * longer, as Gemma 3's is) go into config.json and generation_config.json, <end_of_turn>
     * into generation_config.json's eos_token_id list. */
    const char *tokenizer;
    /* NULL, or Gemma 3's vision encoder (adapters merged): the directory becomes a
     * Gemma3ForConditionalGeneration (language_model.model., vision_tower.vision_model.,
     * multi_modal_projector.; models/io/vision_hf.h) */
    const gt_vision *vision;
    /* NULL, or Gemma 4's towers (either or both): the directory becomes one
     * Gemma4ForConditionalGeneration (model.language_model., model.vision_tower.,
     * model.embed_vision., model.audio_tower., model.embed_audio.; models/io/hf_towers4.h), the
     * tokenizer's <|image>, <|image|>, <image|>, <|audio>, <|audio|>, <audio|> ids in config.json;
     * vision_bidir: text_config.use_bidirectional_attention "vision" (KerasHub's
     * use_vision_bidirectional_attention) */
    const gt_vision4 *vision4;
    const gt_audio_enc *audio;
    bool vision_bidir;
} gt_hf_save_opts;

/* Write the model into dir (created if missing). The files named above are replaced, a stale
 * model.safetensors.index.json is removed (it would shadow the new file), other files are left
 * alone. Nothing is written when the config or the tokenizer is refused. opts may be NULL. */
int gt_hf_gemma_save(const gt_gemma *m, const char *dir, const gt_hf_save_opts *opts, char *err,
                     size_t errn);

#endif
