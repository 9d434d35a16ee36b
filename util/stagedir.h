/* stagedir.h: a directory output (a KerasHub preset, a Hugging Face or PEFT directory) that
 * appears whole or not at all: it is written into "<path>.tmp.XXXXXX" beside path and moved into
 * place only once complete; a failed write leaves no partial directory under the final name.
 *   gt_stage_open(path, &s):   creates s.dir, to write into; path must outlive s
 *   gt_stage_commit(&s):       moves s.dir to path; an existing path (the caller's --overwrite)
 *                              is swapped out atomically (renameat2 RENAME_EXCHANGE) and removed
 *   gt_stage_abort(&s):        removes s.dir and its contents (safe after open failed or commit)
 *   gt_stage_msg(&s, msg, n):  rewrites s.dir to path inside a message, so errors name the target
 * Functions taking err return 0 or -1 with one line naming path. */
#ifndef GT_UTIL_STAGEDIR_H
#define GT_UTIL_STAGEDIR_H

#include <stddef.h>

typedef struct gt_stage {
    char *dir;        /* the temporary directory (owned), NULL once committed or aborted */
    const char *path; /* the target (borrowed) */
} gt_stage;

int gt_stage_open(const char *path, gt_stage *s, char *err, size_t errn);
int gt_stage_commit(gt_stage *s, char *err, size_t errn);
void gt_stage_abort(gt_stage *s);
void gt_stage_msg(const gt_stage *s, char *msg, size_t n);

#endif
