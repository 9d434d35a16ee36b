/* loader.h: open a model and its tokenizer from a path, whatever the format.
 *
 * Supported now: a llama.cpp GGUF file (weights dequantised to fp32, tokenizer from the
 * tokenizer.ggml.* metadata), or its chunk files comma-separated in order (gt_gguf_open). KerasHub preset directories and Hugging Face directories arrive
 * with preset import. Errors name the path. The caller frees both results. */
#ifndef GT_LOADER_H
#define GT_LOADER_H

#include "data/tokenizer.h"
#include "models/gemma.h"
#include "models/gguf.h"

int gt_load_model(const char *path, bool trainable, gt_gemma **model, gt_tokenizer **tok,
                  char *err, size_t errn);
/* The tokenizer of an open GGUF (tokenizer.ggml.tokens / scores / token_type, special ids). */
int gt_load_tokenizer_gguf(const gt_gguf *g, gt_tokenizer **tok, char *err, size_t errn);

#endif
