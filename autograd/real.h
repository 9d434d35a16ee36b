/* real.h: the engine's scalar type.
 *
 * The engine is compiled twice from one source: fp32 (gt_real = float, the product) and, with
 * -DGT_REAL_DOUBLE, fp64 (gt_real = double), used by the finite-difference gradient checks so
 * that they can demand 1e-7 relative agreement. Op code calls math through <tgmath.h>, so
 * exp/tanh/sqrt pick the right precision, and GEMMs go through gt_gemm (blas.h).
 * Types only: nothing to own, nothing that fails. */
#ifndef GT_REAL_H
#define GT_REAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef GT_REAL_DOUBLE
typedef double gt_real;
#define GT_REAL_NAME "f64"
#else
typedef float gt_real;
#define GT_REAL_NAME "f32"
#endif

#endif
