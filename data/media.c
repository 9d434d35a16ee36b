/* media.c: media file lists in JSONL records (contract in media.h). */
#include "data/media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

void gt_media_free(char **paths, int n) {
    for (int i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
}

int gt_media_parse(json_t *o, const char *key, char ***paths, int *n, char *err, size_t errn) {
    if (paths) {
        *paths = NULL;
        *n = 0;
    }
    json_t *a = json_object_get(o, key);
    if (!a) return 0;
    if (!json_is_array(a)) return gt_errf(err, errn, "\"%s\" must be an array of file paths", key);
    size_t len = json_array_size(a);
    for (size_t i = 0; i < len; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s) || json_string_length(s) == 0 ||
            strlen(json_string_value(s)) != json_string_length(s))
            return gt_errf(err, errn, "%s[%zu] must be a non-empty file path string", key, i);
    }
    if (!paths || len == 0) return 0;
    *paths = calloc(len, sizeof **paths);
    if (!*paths) return gt_errf(err, errn, "\"%s\": out of memory", key);
    for (size_t i = 0; i < len; i++) {
        (*paths)[i] = strdup(json_string_value(json_array_get(a, i)));
        if (!(*paths)[i]) {
            gt_media_free(*paths, (int)i);
            *paths = NULL;
            return gt_errf(err, errn, "\"%s\": out of memory", key);
        }
    }
    *n = (int)len;
    return 0;
}

int gt_media_resolve(const char *jsonl_path, char **paths, int n, char *err, size_t errn) {
    const char *slash = strrchr(jsonl_path, '/');
    size_t dlen = slash ? (size_t)(slash - jsonl_path) + 1 : 0;
    for (int i = 0; dlen && i < n; i++) {
        if (paths[i][0] == '/') continue;
        size_t l = strlen(paths[i]);
        char *p = malloc(dlen + l + 1);
        if (!p) return gt_errf(err, errn, "%s: out of memory", jsonl_path);
        memcpy(p, jsonl_path, dlen);
        memcpy(p + dlen, paths[i], l + 1);
        free(paths[i]);
        paths[i] = p;
    }
    return 0;
}
