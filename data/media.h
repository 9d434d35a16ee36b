/* media.h: media file lists in JSONL records (e.g. "audio": ["clip.wav"]).
 * A record's list is an array of non-empty strings; relative paths are taken relative to the
 * directory of the JSONL file that holds them (absolute ones are kept).
 * Errors: -1 with a message naming the key and the element (the dataset adds file:line). */
#ifndef GT_DATA_MEDIA_H
#define GT_DATA_MEDIA_H

#include <jansson.h>
#include <stddef.h>

/* Record o's list under key into *paths / *n (both NULL: validate only); a missing key is an
 * empty list. *paths is malloc'ed (gt_media_free). */
int gt_media_parse(json_t *o, const char *key, char ***paths, int *n, char *err, size_t errn);
/* Rewrite relative paths[i] as dirname(jsonl_path)/paths[i]. */
int gt_media_resolve(const char *jsonl_path, char **paths, int n, char *err, size_t errn);
void gt_media_free(char **paths, int n);

#endif
