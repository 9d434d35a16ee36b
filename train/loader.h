/* loader.h: open a model and its tokenizer from a path, whatever the format.
 *
 * Supported: a llama.cpp GGUF file (weights dequantised to fp32, tokenizer from the
 * tokenizer.ggml.* metadata) and a KerasHub preset directory (a directory with a config.json
 * naming a keras_hub backbone: models/keras_preset.h). Errors name the path. The caller frees
 * both results. */
#ifndef GT_LOADER_H
#define GT_LOADER_H

#include "data/tokenizer.h"
#include "models/gemma.h"

int gt_load_model(const char *path, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                  char *err, size_t errn);

#endif
