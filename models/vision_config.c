#include "models/vision_config.h"

#include <math.h>

#include "util/err.h"

int gt_vision_config_check(const gt_vision_config *c, char *err, size_t errn) {
    struct { const char *name; int64_t v; } pos[] = {
        {"image_size", c->image_size}, {"patch_size", c->patch_size}, {"num_heads", c->num_heads},
        {"hidden_dim", c->hidden_dim}, {"num_layers", c->num_layers},
        {"intermediate_dim", c->intermediate_dim}, {"output_dim", c->output_dim},
        {"pool_size", c->pool_size}};
    for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
        if (pos[i].v < 1 || pos[i].v > ((int64_t)1 << 20))
            return gt_errf(err, errn, "vision encoder: %s = %lld must be in [1, 2^20]", pos[i].name,
                           (long long)pos[i].v);
    if (c->image_size % c->patch_size)
        return gt_errf(err, errn, "vision encoder: patch_size %lld does not divide image_size %lld",
                       (long long)c->patch_size, (long long)c->image_size);
    if (c->pool_size > c->image_size / c->patch_size)
        return gt_errf(err, errn, "vision encoder: pool_size %lld exceeds the %lld-patch grid",
                       (long long)c->pool_size, (long long)(c->image_size / c->patch_size));
    if (c->hidden_dim % c->num_heads)
        return gt_errf(err, errn, "vision encoder: num_heads %lld does not divide hidden_dim %lld",
                       (long long)c->num_heads, (long long)c->hidden_dim);
    if (!(c->layer_norm_epsilon >= 0) || !isfinite(c->layer_norm_epsilon))
        return gt_errf(err, errn, "vision encoder: layer_norm_epsilon %g must be finite and >= 0",
                       c->layer_norm_epsilon);
    return 0;
}

int64_t gt_vision_tokens_per_image(const gt_vision_config *c) {
    int64_t r = c->image_size / c->patch_size / c->pool_size;
    return r * r;
}

/* The encoder's parameters by kind (models/vision.c allocates them from its table; the vision
 * test checks that the two agree). */
int64_t gt_vision_param_count(const gt_vision_config *c) {
    int64_t d = c->hidden_dim, f = c->intermediate_dim, w = c->image_size / c->patch_size;
    int64_t embed = d * c->patch_size * c->patch_size * 3 + d + w * w * d;
    int64_t per_layer = 4 * d            /* two LayerNorms, gamma and beta */
                        + 4 * (d * d + d) /* q, k, v, out with biases */
                        + 2 * d * f + f + d;
    return embed + c->num_layers * per_layer + 2 * d + d + d * c->output_dim;
}

gt_vision_config gt_vision_gemma3_siglip(int64_t output_dim) {
    return (gt_vision_config){896, 14, 16, 1152, 27, 4304, output_dim, 4, 1e-6};
}
