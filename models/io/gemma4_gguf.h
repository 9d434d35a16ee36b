/* gemma4_gguf.h: Gemma 4 text decoders in llama.cpp GGUF files (architecture gemma4, as
 * llama.cpp's converter writes them): the config from the metadata, the MoE expert tensors, and
 * the Gemma 4 parts of the export (gguf_export.c writes the rest).
 *
 * Keys "gemma4.<key>": block_count, embedding_length, attention.head_count,
 * attention.key_length (global layers' head dim) and key_length_swa (local layers'),
 * feed_forward_length and attention.head_count_kv (a value, or one per layer),
 * attention.sliding_window_pattern (a bool per layer, true = local), attention.sliding_window,
 * attention.shared_kv_layers, embedding_length_per_layer_input, rope.freq_base (global) and
 * rope.freq_base_swa, final_logit_softcapping, layer_norm_rms_epsilon, context_length; MoE: the
 * field table's expert_count, expert_used_count, expert_feed_forward_length. Derived:
 * the layer pattern P (layer i local iff i % P < P - 1; another layout is refused), the double-wide
 * MLP (kv-shared layers at 2 x feed_forward_length), k = v on global layers (no blk.N.attn_v),
 * the partial rotation from rope_freqs.weight (1 on rotated frequency pairs, 1e30 on the rest),
 * the PLE table's rows from per_layer_token_embd.weight, MoE from blk.0.ffn_gate_inp.weight.
 * RMSNorm weights are stored as they are (no 1 + w, unlike gemma / gemma2 / gemma3).
 * MoE tensors (HF's layouts kept): ffn_gate_up_exps [E, 2F, D] (gate rows first per expert;
 * separate ffn_gate_exps / ffn_up_exps banks are refused), ffn_down_exps [E, D, F], router
 * ffn_gate_inp.weight [E, D] and .scale [D], per-expert scale ffn_down_exps.scale [E].
 * Export refuses what llama.cpp's gemma4 graph cannot run as we do (message names the field):
 * attention soft-cap, RoPE scaling factors, a PLE vocabulary other than the model's, and
 * kv-shared layers unless the last non-shared layer is global and the one before it local
 * (llama.cpp takes local layers' k, v from layer L - S - 2 and global ones' from L - S - 1).
 * Errors: -1 and one line naming the key or tensor. Nothing allocated is kept unless said. */
#ifndef GT_GEMMA4_GGUF_H
#define GT_GEMMA4_GGUF_H

#include "models/gemma.h"
#include "models/io/gguf.h"
#include "models/io/gguf_writer.h"

int gt_gemma4_config_from_gguf(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn);
/* One expert kernel of block `layer` (dst: its expert_gate, expert_up or expert_down) from the
 * file, shapes checked. */
int gt_gemma4_gguf_load_expert(const gt_gguf *g, const gt_gemma *m, int64_t layer, gt_tensor *dst, char *err,
                               size_t errn);

/* Export: 0 when llama.cpp can run c, else -1 and the field. */
int gt_gemma4_gguf_check(const gt_gemma_config *c, char *err, size_t errn);
/* The gemma4.* hyperparameters. -1 when out of memory. */
int gt_gemma4_gguf_hparams(gt_ggufw *w, const gt_gemma_config *c);
/* How parameter p is stored: *data (a new buffer in *owned for the fused expert gate/up, which
 * the caller frees after the write), rank and row-major shape. Returns 1 when p is written as
 * part of another tensor (expert up), -1 when out of memory. */
int gt_gemma4_gguf_layout(const gt_gemma *m, const gt_gemma_param *p, const float **data, float **owned, int *ndim,
                          int64_t shape[3]);
/* rope_freqs.weight (global head dim / 2 values) into *owned (the caller frees after the write). */
int gt_gemma4_gguf_rope_freqs(gt_ggufw *w, const gt_gemma_config *c, float **owned, char *err, size_t errn);

#endif
