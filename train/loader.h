/* loader.h: open a model and its tokenizer from a path, whatever the format.
 *
 * A llama.cpp GGUF file, or its chunk files comma-separated in order (gt_gguf_open; weights
 * dequantised to fp32, tokenizer from the tokenizer.ggml.* metadata), a KerasHub preset
 * directory (config.json naming a keras_hub backbone: models/io/keras_preset.h) or a Hugging Face
 * directory (config.json + model.safetensors or its sharded index, tokenizer.json or
 * tokenizer.model: models/io/hf_gemma.h). The architecture comes from the file's own config.
 * Errors name the path. The caller frees both results. */
#ifndef GT_LOADER_H
#define GT_LOADER_H

#include "data/tokenizer.h"
#include "models/gemma.h"

int gt_load_model(const char *path, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                  char *err, size_t errn);
/* A frozen model stored as dt (gemma.h's frozen storage): a GGUF file or a KerasHub preset
 * straight into it (gt_gemma_from_gguf_frozen, gt_keras_preset_load_frozen: no fp32 copy of the
 * model); HF directories load as fp32 and are converted a tensor at a time (their peak is the
 * fp32 model). */
int gt_load_model_frozen(const char *path, gt_frozen_dtype dt, gt_gemma **model, gt_tokenizer **tok,
                         char *err, size_t errn);
#endif
