/* qdot.h: int8 dot products of Q8_0 matrices with 8-bit activations, for decoding.
 *
 * A single-token step reads every frozen weight once per token and little else, so it is bound
 * by memory bandwidth: the weights stay Q8_0 blocks (autograd/quant.h, 34 bytes per 32 values)
 * and the activation row is quantised per step to blocks of 32 with an fp32 scale
 * (gt_qdot_quantize: dx = max|x| / 127, q = round(x / dx), halves away from zero, |q| <= 127;
 * an all-zero block gets dx = 0), so every block product is an exact int32 sum:
 *   y[r] = sum_b dw[r,b] * dx[b] * (sum_i qw[r,b,i] * qx[b,i])      (dw: the block's fp16 scale)
 * with the block terms summed in fp32. Kernels: AVX512-VNNI (vpdpbusd, with AVX512-BW) chosen at
 * run time when the CPU has it, else a portable scalar one; they differ only in the order of the
 * fp32 sums. GT_QDOT_KERNEL=scalar forces the scalar kernel, =off the caller's fp32 path.
 * gt_qdot_matvec splits the rows over the OpenMP threads (gt_threads()).
 * gt_qdot_linear is the tensor op: x [..., cols] W^T for a Q8_0 W [rows, cols], each row of x
 * quantised as above; inference only (no backward: an input that needs a gradient is an error).
 * Pure functions otherwise; gt_qdot_quantize's output is caller-owned (gt_qdot_x_bytes). */
#ifndef GT_QDOT_H
#define GT_QDOT_H

#include <stdint.h>

#include "autograd/tape.h"

/* GT_QDOT_OFF: callers keep their fp32 path (models/gemma.c: dequantise, then sgemm). */
typedef enum { GT_QDOT_OFF = 0, GT_QDOT_SCALAR = 1, GT_QDOT_VNNI512 = 2 } gt_qdot_kern;

/* The kernel in use: the CPU's best unless GT_QDOT_KERNEL (off, scalar) or gt_qdot_set_kernel
 * said otherwise (read once). */
gt_qdot_kern gt_qdot_kernel(void);
/* Tests and benchmarks: use k from now on (VNNI512 on a CPU without it: scalar); returns the
 * kernel now in use. */
gt_qdot_kern gt_qdot_set_kernel(gt_qdot_kern k);
const char *gt_qdot_kernel_name(gt_qdot_kern k);

/* A quantised activation row of n values (n a multiple of 32): q [n] int8 then d [n/32] float,
 * at a 64-byte-aligned base; gt_qdot_x_bytes(n) bytes. */
typedef struct gt_qdot_x {
    const int8_t *q;
    const float *d;
    int64_t n;
} gt_qdot_x;

static inline int64_t gt_qdot_x_bytes(int64_t n) { return n + n / 32 * 4 + 64; }
/* Quantises x[0..n) into buf (gt_qdot_x_bytes(n) bytes, 64-byte aligned) and describes it in *out. */
void gt_qdot_quantize(const float *x, int64_t n, void *buf, gt_qdot_x *out);
/* y[0..rows) = W x for W [rows, x->n] as Q8_0 blocks, with kernel k (gt_qdot_kernel() normally). */
void gt_qdot_matvec(gt_qdot_kern k, const uint8_t *w, int64_t rows, const gt_qdot_x *x, float *y);

/* GGUF Q5_0 blocks (fp16 d, 32 high bits, 16 bytes of low nibbles; value d (q - 16)) as Q8_0
 * blocks with the same d and q - 16: exact, so a Q5_0 file keeps its values in q8_0 storage. */
void gt_qdot_q5_0_to_q8_0(const uint8_t *src, uint8_t *dst, int64_t nblocks);

gt_tensor *gt_qdot_linear(gt_ctx *ctx, gt_tensor *x, const uint8_t *w, int64_t rows, int64_t cols);

#endif
