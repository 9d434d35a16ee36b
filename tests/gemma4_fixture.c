/* gemma4_fixture.c: Gemma 4 models from KerasHub fixtures (contract in gemma4_fixture.h). */
#include "tests/gemma4_fixture.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gt_gemma *gt_fix_gemma4_decoder(gt_h5 f) {
    gt_gemma_config c;
    gt_gemma_config_defaults(&c, 4);
    c.vocab_size = (int64_t)gt_fix_attr_or(f, "vocabulary_size", 0);
    c.num_layers = (int64_t)gt_fix_attr_or(f, "num_layers", 0);
    c.hidden_dim = (int64_t)gt_fix_attr_or(f, "hidden_dim", 0);
    c.intermediate_dim = (int64_t)gt_fix_attr_or(f, "intermediate_dim", 0);
    c.num_query_heads = (int64_t)gt_fix_attr_or(f, "num_query_heads", 0);
    c.num_kv_heads = (int64_t)gt_fix_attr_or(f, "num_key_value_heads", 0);
    c.head_dim = (int64_t)gt_fix_attr_or(f, "head_dim", 0);
    c.global_head_dim = (int64_t)gt_fix_attr_or(f, "global_head_dim", 0);
    c.num_global_kv_heads = (int64_t)gt_fix_attr_or(f, "num_global_key_value_heads", 0);
    c.sliding_window = (int64_t)gt_fix_attr_or(f, "sliding_window_size", 512);
    c.sliding_pattern = (int)gt_fix_attr_or(f, "sliding_window_pattern", 6);
    c.attn_logit_softcap = gt_fix_attr_or(f, "attention_logit_soft_cap", 0);
    c.final_logit_softcap = gt_fix_attr_or(f, "final_logit_soft_cap", 0);
    c.rope_global_partial = gt_fix_attr_or(f, "global_rope_partial_rotary_factor", 1);
    c.rope_global_scale = gt_fix_attr_or(f, "global_rope_scaling_factor", 1);
    c.num_kv_shared_layers = (int64_t)gt_fix_attr_or(f, "num_kv_shared_layers", 0);
    c.double_wide_mlp = gt_fix_attr_or(f, "use_double_wide_mlp", 0) != 0;
    c.per_layer_input_dim = (int64_t)gt_fix_attr_or(f, "hidden_size_per_layer_input", 0);
    c.per_layer_vocab_size = (int64_t)gt_fix_attr_or(f, "vocab_size_per_layer_input", 0);
    char err[1024];
    ck_assert_msg(gt_gemma_config_validate(&c, err, sizeof err) == 0, "%s", err);
    gt_gemma *m;
    ck_assert_msg(gt_gemma_create(&c, true, &m, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < m->n_params; i++) {
        char p[160];
        snprintf(p, sizeof p, "/weights/%s", m->params[i].name);
        float *w = gt_fix_f32(f, p, m->params[i].t->size);
        memcpy(m->params[i].t->data, w, (size_t)m->params[i].t->size * sizeof(float));
        free(w);
    }
    return m;
}

void gt_fix_vision4(gt_h5 f, gt_vision4 *v, int64_t out_dim) {
    gt_vision4_config c;
    gt_vision4_defaults(&c, out_dim);
    c.image_size = (int64_t)gt_fix_attr_or(f, "vision_image_size", 0);
    c.patch_size = (int64_t)gt_fix_attr_or(f, "vision_patch_size", 0);
    c.pool_size = (int64_t)gt_fix_attr_or(f, "vision_pool_size", 0);
    c.hidden = (int64_t)gt_fix_attr_or(f, "vision_hidden_dim", 0);
    c.intermediate = (int64_t)gt_fix_attr_or(f, "vision_intermediate_dim", 0);
    c.num_layers = (int64_t)gt_fix_attr_or(f, "vision_num_layers", 0);
    c.num_heads = (int64_t)gt_fix_attr_or(f, "vision_num_heads", 0);
    c.num_kv_heads = (int64_t)gt_fix_attr_or(f, "vision_num_key_value_heads", 0);
    c.head_dim = (int64_t)gt_fix_attr_or(f, "vision_head_dim", 0);
    c.pos_table = (int64_t)gt_fix_attr_or(f, "vision_position_embedding_size", 0);
    c.rope_base = gt_fix_attr_or(f, "vision_rope_max_wavelength", 0);
    c.clipped = gt_fix_attr_or(f, "vision_use_clipped_linears", 0) != 0;
    char err[512];
    ck_assert_msg(gt_vision4_init(v, &c, err, sizeof err) == 0, "%s", err);
    gt_fix_load(f, "/weights/vision/", v->all, v->n_all);
}

void gt_fix_audio_enc(gt_h5 f, gt_audio_enc *a, int64_t out_dim) {
    gt_audio_enc_config c;
    gt_audio_enc_defaults(&c, out_dim);
    c.input_feat_size = (int64_t)gt_fix_attr(f, "audio_input_feat_size");
    c.hidden = (int64_t)gt_fix_attr(f, "audio_hidden_size");
    c.num_heads = (int64_t)gt_fix_attr(f, "audio_num_heads");
    c.num_layers = (int64_t)gt_fix_attr(f, "audio_num_layers");
    c.chunk = (int64_t)gt_fix_attr(f, "audio_chunk_size");
    c.context_left = (int64_t)gt_fix_attr(f, "audio_context_left");
    c.context_right = (int64_t)gt_fix_attr(f, "audio_context_right");
    c.logit_cap = gt_fix_attr(f, "audio_logit_cap");
    c.conv_kernel = (int64_t)gt_fix_attr(f, "audio_conv_kernel_size");
    c.output_proj_dims = (int64_t)gt_fix_attr(f, "audio_output_proj_dims");
    c.sscp_channels[0] = (int64_t)gt_fix_attr(f, "audio_sscp_conv_channels_0");
    c.sscp_channels[1] = (int64_t)gt_fix_attr(f, "audio_sscp_conv_channels_1");
    char err[512];
    ck_assert_msg(gt_audio_enc_init(a, &c, err, sizeof err) == 0, "%s", err);
    gt_fix_load(f, "/weights/audio/", a->all, a->n_all);
}
