/* gemma4_gguf.h: the config of a Gemma 4 text decoder from llama.cpp GGUF metadata (architecture
 * gemma4, as llama.cpp's converter writes it).
 *
 * Keys "gemma4.<key>": block_count, embedding_length, attention.head_count,
 * attention.key_length (global layers' head dim) and key_length_swa (local layers'),
 * feed_forward_length and attention.head_count_kv (a value, or one per layer),
 * attention.sliding_window_pattern (a bool per layer, true = local), attention.sliding_window,
 * attention.shared_kv_layers, embedding_length_per_layer_input, rope.freq_base (global) and
 * rope.freq_base_swa, final_logit_softcapping, layer_norm_rms_epsilon, context_length. Derived:
 * the layer pattern P (layer i local iff i % P < P - 1; another layout is refused), the double-wide
 * MLP (kv-shared layers at 2 x feed_forward_length), k = v on global layers (no blk.N.attn_v),
 * the partial rotation from rope_freqs.weight (1 on rotated frequency pairs, 1e30 on the rest),
 * the PLE table's rows from per_layer_token_embd.weight. RMSNorm weights are stored as they are
 * (no 1 + w, unlike gemma / gemma2 / gemma3).
 * Errors: -1 and one line naming the key or tensor. Nothing allocated is kept. */
#ifndef GT_GEMMA4_GGUF_H
#define GT_GEMMA4_GGUF_H

#include "models/gemma_config.h"
#include "models/io/gguf.h"

int gt_gemma4_config_from_gguf(const gt_gguf *g, gt_gemma_config *c, char *err, size_t errn);

#endif
