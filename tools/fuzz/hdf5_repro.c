/* hdf5_repro.c: shows that a checkpoint-fuzzing crash is libhdf5's own, with no gemmatrain code:
 * it opens a file and every attribute gt_ckpt_load opens, nothing else. Under ASan, on
 * tools/fuzz/seeds/checkpoint/hdf5_attr_walk_uaf.h5, libhdf5 1.10.8 reads freed or out-of-bounds
 * heap memory inside H5Aopen_by_name (H5O__msg_iterate_real): the reason for fuzz_checkpoint's
 * one ASan suppression.
 * Build and run: clang-14 -fsanitize=address -g -I/usr/include/hdf5/serial tools/fuzz/hdf5_repro.c
 *   -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 -o /tmp/hdf5_repro && /tmp/hdf5_repro FILE */
#include <hdf5.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: hdf5_repro FILE.h5\n"), 2;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return fprintf(stderr, "%s: not opened\n", argv[1]), 1;
    static const char *obj[] = {"/state", "/state", "/state", "/state", "/state",
                                "/state", "/rng", "/rng", "/rng", "/optimizer"};
    static const char *name[] = {"step", "data_epoch", "data_next", "tokens", "elapsed_s",
                                 "world", "train_seed", "shuffle_seed", "lora_seed", "iterations"};
    for (int i = 0; i < 10; i++) {
        hid_t a = H5Aopen_by_name(f, obj[i], name[i], H5P_DEFAULT, H5P_DEFAULT);
        printf("%s@%s: %s\n", obj[i], name[i], a >= 0 ? "opened" : "refused");
        if (a >= 0) H5Aclose(a);
    }
    H5Fclose(f);
    return 0;
}
