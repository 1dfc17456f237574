/* _gemm_params.h: the parameters of one instantiation of the matrix-product template,
 * which the top of _gemm_impl.h documents: checked (#error when one is missing), with
 * their defaults and the macros that follow from them.
 *
 * Each part of the template (_gemm_impl.h, _gemm_epi.h, _gemm_micro.h) includes it, so
 * each compiles on its own given the parameters; the first inclusion of an instantiation
 * does the work, and the end of _gemm_impl.h undefines it all for the next one. */
#ifndef GEMM_PARAMS_READY
#define GEMM_PARAMS_READY 1

#include <stddef.h>
#include "_target.h"    /* restrict, CYMLP_UNROLL, CYMLP_X86, intrinsics, target attributes */
#include "_gemm_defs.h" /* CYMLP_GEMM_KC, CYMLP_GEMM_NC */

#ifndef GEMM_T
#error "GEMM_T (the scalar type) is not defined: see the parameters at the top of _gemm_impl.h"
#endif
#ifndef GEMM_T_SIZE
#error "GEMM_T_SIZE (sizeof(GEMM_T)) is not defined: see _gemm_impl.h"
#endif
#ifndef GEMM_FN
#error "GEMM_FN(x) (the instantiation's symbol names) is not defined: see _gemm_impl.h"
#endif
#ifndef GEMM_ATTR
#error "GEMM_ATTR (function attributes, may be empty) is not defined: see _gemm_impl.h"
#endif
#ifndef GEMM_VB
#error "GEMM_VB (vector bytes, 0 for plain C) is not defined: see _gemm_impl.h"
#endif
#ifndef GEMM_MR
#error "GEMM_MR (rows per micro-tile) is not defined: see _gemm_impl.h"
#endif
#ifndef GEMM_NR
#error "GEMM_NR (columns per micro-tile) is not defined: see _gemm_impl.h"
#endif
#if GEMM_T_SIZE != 4 && GEMM_T_SIZE != 8
#error "GEMM_T_SIZE must be 4 (float) or 8 (double)"
#endif
#if GEMM_VB != 0 && GEMM_VB != 16 && GEMM_VB != 32 && GEMM_VB != 64
#error "GEMM_VB must be 0, 16, 32 or 64"
#endif
#if GEMM_VB != 0 && defined(CYMLP_PORTABLE)
#error "CYMLP_PORTABLE builds instantiate the plain-C kernel only (GEMM_VB 0)"
#endif
_Static_assert(sizeof(GEMM_T) == GEMM_T_SIZE, "GEMM_T_SIZE is sizeof(GEMM_T)");

#ifndef GEMM_NV_MICRO
#define GEMM_NV_MICRO 0
#endif
#ifndef GEMM_TAIL /* 1: a ragged last vector may be a half or quarter one (GEMM_NV_MICRO) */
#define GEMM_TAIL 0
#endif
#if GEMM_TAIL && (!GEMM_NV_MICRO || GEMM_VB < 32 || GEMM_VB / GEMM_T_SIZE < 8)
#error "GEMM_TAIL needs GEMM_NV_MICRO and vectors of at least 8 values, 32 bytes"
#endif
#ifndef GEMM_KC /* steps per block of the sum (at most CYMLP_GEMM_KC: the scratch sizes) */
#define GEMM_KC CYMLP_GEMM_KC
#endif
/* what the scratch sizes of _gemm_defs.h assume (idx lists, A block, packed widths) */
_Static_assert(GEMM_KC <= CYMLP_GEMM_KC, "GEMM_KC above the scratch's CYMLP_GEMM_KC");
_Static_assert(64 % GEMM_NR == 0 || GEMM_NR == 24, "cymlp_npad rounds to 64 and to 24");
#define GEMM_NC (CYMLP_GEMM_NC / GEMM_NR * GEMM_NR) /* column blocks of whole slivers */
/* GEMM_AVX512: this instantiation may use AVX-512 intrinsics (masked loads, compress)
 * where GCC's vector extensions have no equivalent. */
#if defined(CYMLP_X86) && GEMM_VB == 64
#define GEMM_AVX512 1
#if GEMM_T_SIZE == 4
#define GEMM_MASK __mmask16
#define GEMM_MASKZ_LOAD _mm512_maskz_loadu_ps
#define GEMM_MASK_STORE _mm512_mask_storeu_ps
#define GEMM_STOREU _mm512_storeu_ps
#define GEMM_CMPNEQ(x) _mm512_cmpneq_ps_mask((x), _mm512_setzero_ps())
#else
#define GEMM_MASK __mmask8
#define GEMM_MASKZ_LOAD _mm512_maskz_loadu_pd
#define GEMM_MASK_STORE _mm512_mask_storeu_pd
#define GEMM_STOREU _mm512_storeu_pd
#define GEMM_CMPNEQ(x) _mm512_cmpneq_pd_mask((x), _mm512_setzero_pd())
#endif
#else
#define GEMM_AVX512 0
#endif
/* GEMM_AVX2: an AVX2+FMA instantiation (32-byte vectors on x86-64), which may use AVX2
 * intrinsics (movemask) where GCC's vector extensions have no equivalent. */
#if defined(CYMLP_X86) && GEMM_VB == 32
#define GEMM_AVX2 1
#else
#define GEMM_AVX2 0
#endif

#endif /* GEMM_PARAMS_READY */
