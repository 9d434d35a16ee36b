/* hdf5_repro.c: shows that a checkpoint-fuzzing crash is libhdf5's own, with no gemmatrain code.
 * For each FILE it opens the file and does what gt_ckpt_load asks of libhdf5 (open every
 * attribute the loader reads, H5Lexists on each link, H5Dopen2 on each dataset), nothing else,
 * printing each step before it runs, so a crash shows where libhdf5 1.10.8 fails:
 *   tools/fuzz/seeds/checkpoint/hdf5_attr_walk_uaf.h5   reads freed memory in H5Aopen_by_name
 *                                      (H5O__msg_iterate_real; fuzz_checkpoint's one ASan suppression)
 *   tools/fuzz/hdf5_crashes/attr_walk_segv.h5       SIGSEGV in the same walker
 *   tools/fuzz/hdf5_crashes/local_heap_null_copy.h5 SIGSEGV in H5Lexists: a corrupted local heap
 *                                      size makes a huge allocation fail, then memcpy into NULL
 *   tools/fuzz/hdf5_crashes/chunk_dim_fpe.h5        SIGFPE in H5Dopen2 (H5D__chunk_set_info divides
 *                                      by a chunk dimension of 0)
 * The files in hdf5_crashes/ are not fuzzing seeds (a seed that crashes stops a run at once).
 * Checkpoints are sealed (train/checkpoint.h), so such corruption of a written checkpoint is
 * refused before libhdf5 reads it.
 * Build and run: gcc -g -I/usr/include/hdf5/serial tools/fuzz/hdf5_repro.c
 *   -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -o /tmp/hdf5_repro && /tmp/hdf5_repro FILE...
 *   (add -fsanitize=address for the first file's report) */
#include <hdf5.h>
#include <stdio.h>

static herr_t visit(hid_t f, const char *name, const H5L_info_t *info, void *op) {
    (void)info, (void)op;
    char path[512];
    snprintf(path, sizeof path, "/%s", name);
    printf("  H5Lexists %s ...", path);
    fflush(stdout);
    htri_t e = H5Lexists(f, path, H5P_DEFAULT);
    printf(" %d\n", (int)e);
    if (e > 0) { /* a group is simply refused */
        printf("  H5Dopen2 %s ...", path);
        fflush(stdout);
        hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
        printf(" %s\n", d >= 0 ? "opened" : "refused");
        if (d >= 0) H5Dclose(d);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: hdf5_repro FILE.h5...\n"), 2;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    static const char *obj[] = {"/state", "/state", "/state", "/state", "/state",
                                "/state", "/rng", "/rng", "/rng", "/optimizer"};
    static const char *name[] = {"step", "data_epoch", "data_next", "tokens", "elapsed_s",
                                 "world", "train_seed", "shuffle_seed", "lora_seed", "iterations"};
    for (int a = 1; a < argc; a++) {
        printf("%s\n", argv[a]);
        hid_t f = H5Fopen(argv[a], H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) {
            printf("  not opened\n");
            continue;
        }
        for (int i = 0; i < 10; i++) {
            printf("  H5Aopen_by_name %s@%s ...", obj[i], name[i]);
            fflush(stdout);
            hid_t at = H5Aopen_by_name(f, obj[i], name[i], H5P_DEFAULT, H5P_DEFAULT);
            printf(" %s\n", at >= 0 ? "opened" : "refused");
            if (at >= 0) H5Aclose(at);
        }
        H5Lvisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, visit, NULL);
        H5Fclose(f);
    }
    return 0;
}
