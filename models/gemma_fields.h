/* gemma_fields.h: the one table of gt_gemma_config's fields as each file format names them,
 * walked by the KerasHub backbone config reader and writer, the Hugging Face config.json reader
 * and writer, and the GGUF metadata reader.
 *
 * A row per config field: its offset and type, the KerasHub backbone key (with the generations
 * whose backbone class stores it, its default when absent or null, and transforms such as
 * GemmaBackbone's two-branch intermediate_dim), the Hugging Face config.json key (with
 * transformers' class default per generation), and the GGUF metadata key suffix ("<arch>.<key>").
 * What does not fit a row (layer-type patterns, per-type RoPE dicts, query scaling) stays a small
 * named function in the format's file. Adding a config field is one row here plus its member in
 * gemma_config.h.
 *
 * Pure data and accessors; nothing allocates and nothing fails. */
#ifndef GT_GEMMA_FIELDS_H
#define GT_GEMMA_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "models/gemma_config.h"

typedef enum { GT_FIELD_INT, GT_FIELD_NUM, GT_FIELD_BOOL } gt_field_type;

/* generation bit masks */
#define GT_G(g) (1u << (g))
#define GT_G123 (GT_G(1) | GT_G(2) | GT_G(3))
#define GT_G1234 (GT_G123 | GT_G(4))

enum {
    GT_FF_REQUIRED = 1u << 0,  /* KerasHub / GGUF: the key must be present */
    GT_FF_NULL_ZERO = 1u << 1, /* 0 is written as null (and null reads as 0) */
    GT_FF_TWICE12 = 1u << 2,   /* KerasHub GemmaBackbone (generations 1, 2) stores 2x the value */
    GT_FF_POSITIVE = 1u << 3,  /* GGUF: only a value > 0 is taken */
};

typedef struct gt_gemma_field {
    const char *name;       /* gt_gemma_config member */
    size_t off, size;       /* INT members are int64_t, or int (sliding_pattern) */
    gt_field_type type;
    /* KerasHub backbone config.json ("config" object) */
    const char *keras;      /* NULL: KerasHub does not store it */
    unsigned keras_gens;    /* GT_G bits of the generations whose backbone class stores it */
    unsigned keras_flags;   /* GT_FF_REQUIRED, GT_FF_NULL_ZERO, GT_FF_TWICE12 */
    double keras_dflt;      /* when absent or null */
    /* Hugging Face config.json (the text model's config) */
    const char *hf;         /* NULL: not a top-level key */
    unsigned hf_gens;       /* generations whose HF class has the field (starts at hf_dflt) */
    unsigned hf_nested;     /* of those, where the key is not top level (a special function reads it) */
    unsigned hf_flags;      /* GT_FF_NULL_ZERO: null reads as 0, 0 is written as null */
    double hf_dflt[5];      /* transformers' class default, by generation */
    /* GGUF metadata "<arch>.<gguf>" */
    const char *gguf;
    unsigned gguf_gens;
    unsigned gguf_flags;    /* GT_FF_REQUIRED, GT_FF_POSITIVE */
} gt_gemma_field;

/* The table; *n receives its length. */
const gt_gemma_field *gt_gemma_fields(size_t *n);
/* The row KerasHub stores under key for generation gen, or NULL. */
const gt_gemma_field *gt_gemma_field_keras(const char *key, int gen);

double gt_gemma_field_get(const gt_gemma_config *c, const gt_gemma_field *f);
void gt_gemma_field_set(gt_gemma_config *c, const gt_gemma_field *f, double v);

#endif
