/* hf_tower4.h: what the two Hugging Face Gemma 4 tower readers (hf_vision4, hf_audio) and the
 * tower writer (hf_towers4) share: our parameter name -> HF's through a tower's tables, and a
 * clipped linear's four scalar bounds.
 * Names: a whole-name entry in `top`, else our_layer "N." + a `layer` entry -> hf_layer "N." +
 * its HF name; an HF entry without "weight" or "per_dim" is a clipped linear, whose kernel is
 * ".linear.weight" and whose clip (our "<name>.clip") is the bare prefix, to which
 * GT_HF_T4_CLIP's four suffixes are added. Errors: -1 (an unknown name: no message; a missing
 * or non-scalar bound: one line naming dir and tensor). */
#ifndef GT_MODELS_IO_HF_TOWER4_H
#define GT_MODELS_IO_HF_TOWER4_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/tensor.h"
#include "models/io/safetensors.h"

typedef struct {
    const char *ours, *hf;
} gt_hf_t4_pair;

typedef struct {
    const gt_hf_t4_pair *top, *layer;
    size_t n_top, n_layer;
    const char *our_layer, *hf_layer; /* "block_", "model.vision_tower.encoder.layers." */
} gt_hf_t4_names;

/* A clip's four values, in the order our clip tensor holds them. */
extern const char *const GT_HF_T4_CLIP[4];

/* Whether our name is a clipped linear's bounds ("...clip"). */
bool gt_hf_t4_is_clip(const char *ours);

int gt_hf_t4_name(const gt_hf_t4_names *m, const char *ours, char *out, size_t n);

/* t's four bounds from hf + "." + GT_HF_T4_CLIP[i]. */
int gt_hf_t4_load_clip(gt_st *st, gt_tensor *t, const char *hf, const char *dir, char *err, size_t errn);

#endif
