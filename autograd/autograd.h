/* autograd.h: the whole engine in one include.
 * Contract: the includes only; each header states its own (tape.h: the step context, sticky
 * errors, tensor lifetimes). */
#ifndef GT_AUTOGRAD_H
#define GT_AUTOGRAD_H

#include "autograd/arena.h"
#include "autograd/blas.h"
#include "autograd/ops_attn.h"
#include "autograd/ops_audio.h"
#include "autograd/ops_bf16.h"
#include "autograd/ops_elem.h"
#include "autograd/ops_linalg.h"
#include "autograd/ops_lmhead.h"
#include "autograd/ops_loss.h"
#include "autograd/ops_moe.h"
#include "autograd/ops_norm.h"
#include "autograd/ops_vit.h"
#include "autograd/real.h"
#include "autograd/tape.h"
#include "autograd/tensor.h"

#endif
