/* _gemm.h: cymlp's matrix products, C (M,N) [+]= op(A) (M,K) . op(B) (K,N).
 *
 * One template (_gemm_impl.h) is compiled several times: a vector-extension kernel per
 * x86-64 SIMD level (AVX-512, AVX2+FMA, SSE2 baseline; NEON baseline on aarch64) and a
 * plain-C kernel (the only one under CYMLP_PORTABLE, see _target.h). The variant is
 * chosen once at import from the CPU (cpuid), never from the compiler flags, so one
 * generic wheel runs everywhere; CYMLP_SIMD forces one.
 */
#ifndef CYMLP_GEMM_H
#define CYMLP_GEMM_H

#include <stddef.h>
#include "_target.h"    /* CYMLP_PORTABLE, CYMLP_X86, target attributes, the FP mode */
#include "_gemm_defs.h" /* blocking, packed and scratch sizes */
#include "_threads.h"   /* cymlp_parallel_for: OpenMP, a pthreads / Win32 pool, or none */
#include "_vmath.h"     /* the exponential and softmax, per variant too */
#include "_optim.h"     /* the optimizers' steps, per variant too */

/* ---- instantiations ------------------------------------------------------------- */
#define GEMM_T float
#define GEMM_T_SIZE 4
#define GEMM_FN(x) cymlp_##x##_f32_portable
#define GEMM_ATTR
#define GEMM_VB 0
#define GEMM_MR 4
#define GEMM_NR 8
#include "_gemm_impl.h"
#define GEMM_T double
#define GEMM_T_SIZE 8
#define GEMM_FN(x) cymlp_##x##_f64_portable
#define GEMM_ATTR
#define GEMM_VB 0
#define GEMM_MR 4
#define GEMM_NR 4
#include "_gemm_impl.h"

#ifndef CYMLP_PORTABLE
/* baseline: SSE2 on x86-64, NEON on aarch64 (16-byte vectors are always there) */
#define GEMM_T float
#define GEMM_T_SIZE 4
#define GEMM_FN(x) cymlp_##x##_f32_baseline
#define GEMM_ATTR
#define GEMM_VB 16
#define GEMM_MR 6
#define GEMM_NR 8
#include "_gemm_impl.h"
#define GEMM_T double
#define GEMM_T_SIZE 8
#define GEMM_FN(x) cymlp_##x##_f64_baseline
#define GEMM_ATTR
#define GEMM_VB 16
#define GEMM_MR 6
#define GEMM_NR 4
#include "_gemm_impl.h"
#endif

#ifdef CYMLP_X86
/* AVX2 float: 4 x 24 tiles (12 accumulators, 3 vectors of B and a broadcast fill the 16
 * ymm registers); 4-row tiles skip more of a sparse A's zero steps (docs/performance.md).
 * 256-step blocks: a 256 x 24 sliver of B stays in L1. N = 100's last 4 columns take a
 * 1-vector micro-kernel (GEMM_NV_MICRO). */
#define GEMM_T float
#define GEMM_T_SIZE 4
#define GEMM_FN(x) cymlp_##x##_f32_avx2
#define GEMM_ATTR CYMLP_AVX2_ATTR
#define GEMM_VB 32
#define GEMM_MR 4
#define GEMM_NR 24
#define GEMM_NV_MICRO 1
#include "_gemm_impl.h"
#define GEMM_T double
#define GEMM_T_SIZE 8
#define GEMM_FN(x) cymlp_##x##_f64_avx2
#define GEMM_ATTR CYMLP_AVX2_ATTR
#define GEMM_VB 32
#define GEMM_MR 6
#define GEMM_NR 8
#include "_gemm_impl.h"
/* AVX-512 float: 4 x 64 tiles in 128-step blocks (a 128 x 64 sliver of B stays in L1);
 * 4-row tiles skip more of a sparse A's zero steps (docs/performance.md). A ragged last
 * sliver (36 of 100 columns) costs its own vectors only (GEMM_NV_MICRO), its last 4
 * columns a quarter vector (GEMM_TAIL). */
#define GEMM_T float
#define GEMM_T_SIZE 4
#define GEMM_FN(x) cymlp_##x##_f32_avx512
#define GEMM_ATTR CYMLP_AVX512_ATTR
#define GEMM_VB 64
#define GEMM_MR 4
#define GEMM_NR 64
#define GEMM_NV_MICRO 1
#define GEMM_TAIL 1
#define GEMM_KC 128
#include "_gemm_impl.h"
#define GEMM_T double
#define GEMM_T_SIZE 8
#define GEMM_FN(x) cymlp_##x##_f64_avx512
#define GEMM_ATTR CYMLP_AVX512_ATTR
#define GEMM_VB 64
#define GEMM_MR 6
#define GEMM_NR 16
#include "_gemm_impl.h"
#endif


/* ---- run-time dispatch ---------------------------------------------------------- */
typedef void (*cymlp_sgemm_fn)(size_t, size_t, size_t, const float *, ptrdiff_t, ptrdiff_t,
                               const float *, ptrdiff_t, ptrdiff_t, const float *, float *,
                               size_t, int, float *, int, const float *, int, const float *,
                               size_t, float);
typedef void (*cymlp_dgemm_fn)(size_t, size_t, size_t, const double *, ptrdiff_t, ptrdiff_t,
                               const double *, ptrdiff_t, ptrdiff_t, const double *, double *,
                               size_t, int, double *, int, const double *, int,
                               const double *, size_t, double);
typedef void (*cymlp_sapply_fn)(float *, size_t, int, const float *, float);
typedef void (*cymlp_dapply_fn)(double *, size_t, int, const double *, double);
typedef void (*cymlp_spack_fn)(size_t, size_t, size_t, size_t, const float *, ptrdiff_t,
                               ptrdiff_t, float *, int);
typedef void (*cymlp_dpack_fn)(size_t, size_t, size_t, size_t, const double *, ptrdiff_t,
                               ptrdiff_t, double *, int);

enum { CYMLP_CPU_AVX2 = 1, CYMLP_CPU_AVX512 = 2 }; /* what a variant needs of the CPU */

#ifdef CYMLP_X86
/* CPU features from cpuid, and whether the OS saves the vector registers on a context
 * switch (XCR0 from xgetbv), with the same code under GCC, clang, clang-cl and MSVC.
 * (Not __builtin_cpu_supports: under clang-cl it needs compiler-rt's __cpu_model, which
 * MSVC's linker does not bring in.) */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h> /* MSVC: __cpuidex, _xgetbv */
static inline void cymlp_cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
    int x[4];
    __cpuidex(x, (int)leaf, (int)sub);
    for (int k = 0; k < 4; ++k) r[k] = (unsigned)x[k];
}
static inline unsigned long long cymlp_xcr0(void) { return _xgetbv(0); }
#else
/* GCC, clang, clang-cl: the instructions themselves (cpuid.h's macros collide with
 * intrin.h's functions under clang-cl, and clang's _xgetbv wants target("xsave")) */
static inline void cymlp_cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
    __asm__ __volatile__("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                         : "a"(leaf), "c"(sub));
}
static inline unsigned long long cymlp_xcr0(void)
{
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif
/* CYMLP_CPU_* bits of the variants this CPU and OS can run */
static inline int cymlp_cpu_features(void)
{
    unsigned r[4], l1[4], l7[4] = {0, 0, 0, 0}; /* eax, ebx, ecx, edx */
    cymlp_cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 1) return 0;
    cymlp_cpuid(1, 0, l1);
    if (max_leaf >= 7) cymlp_cpuid(7, 0, l7);
    const int osxsave = (l1[2] >> 27) & 1; /* xgetbv works */
    const unsigned long long xcr0 = osxsave ? cymlp_xcr0() : 0;
    const int ymm_os = (xcr0 & 0x6) == 0x6;   /* XMM and YMM state */
    const int zmm_os = (xcr0 & 0xe6) == 0xe6; /* ... opmask, ZMM0-15 upper, ZMM16-31 */
    const int fma = (l1[2] >> 12) & 1, popcnt = (l1[2] >> 23) & 1, avx = (l1[2] >> 28) & 1;
    const int avx2 = (l7[1] >> 5) & 1, bmi2 = (l7[1] >> 8) & 1;
    const int avx512f = (l7[1] >> 16) & 1, avx512dq = (l7[1] >> 17) & 1;
    const int avx512bw = (l7[1] >> 30) & 1, avx512vl = (l7[1] >> 31) & 1;
    int f = 0;
    if (ymm_os && avx && avx2 && fma) f |= CYMLP_CPU_AVX2;
    if ((f & CYMLP_CPU_AVX2) && zmm_os && avx512f && avx512dq && avx512bw && avx512vl && popcnt
        && bmi2)
        f |= CYMLP_CPU_AVX512;
    return f;
}
#else
static inline int cymlp_cpu_features(void) { return 0; }
#endif

/* The variants, one row each: its name (CYMLP_SIMD's value), the CYMLP_CPU_* bits it
 * needs, and its kernels. A variant not compiled in has a name only. */
typedef struct {
    const char *name;
    int cpu;
    cymlp_sgemm_fn sgemm;
    cymlp_dgemm_fn dgemm;
    cymlp_spack_fn spack_rows;
    cymlp_dpack_fn dpack_rows;
    int (*pack_streams)(const void *);
    cymlp_sapply_fn sapply;
    cymlp_dapply_fn dapply;
    cymlp_vexpf_fn vexpf;
    cymlp_softmaxf_fn softmaxf;
    cymlp_ssgd_fn ssgd_step;
    cymlp_dsgd_fn dsgd_step;
    cymlp_sadam_fn sadam_step;
    cymlp_dadam_fn dadam_step;
} cymlp_kernels;

/* a row of the products instantiated with suffix v, and _vmath.h's and _optim.h's
 * functions of suffix vm */
#define CYMLP_KERNELS(name, cpu, v, vm)                                                   \
    {name, cpu, cymlp_gemm_f32_##v, cymlp_gemm_f64_##v, cymlp_pack_rows_f32_##v,           \
     cymlp_pack_rows_f64_##v, cymlp_pack_streams_f32_##v, cymlp_apply_f32_##v,             \
     cymlp_apply_f64_##v, cymlp_vexpf_##vm, cymlp_softmaxf_##vm,                            \
     cymlp_sgd_step_f_##vm, cymlp_sgd_step_d_##vm, cymlp_adam_step_f_##vm,                 \
     cymlp_adam_step_d_##vm}
enum { CYMLP_PORTABLE_V, CYMLP_BASELINE_V, CYMLP_AVX2_V, CYMLP_AVX512_V, CYMLP_N_VARIANTS };
static const cymlp_kernels cymlp_variants[CYMLP_N_VARIANTS] = {
    [CYMLP_PORTABLE_V] = CYMLP_KERNELS("portable", 0, portable, portable),
#ifndef CYMLP_PORTABLE
    /* (the baseline's exponential, softmax and optimizer steps are the portable ones) */
    [CYMLP_BASELINE_V] = CYMLP_KERNELS("baseline", 0, baseline, portable),
#else
    [CYMLP_BASELINE_V] = {.name = "baseline"},
#endif
#ifdef CYMLP_X86
    [CYMLP_AVX2_V] = CYMLP_KERNELS("avx2", CYMLP_CPU_AVX2, avx2, avx2),
    [CYMLP_AVX512_V] = CYMLP_KERNELS("avx512", CYMLP_CPU_AVX512, avx512, avx512),
#else
    [CYMLP_AVX2_V] = {.name = "avx2"},
    [CYMLP_AVX512_V] = {.name = "avx512"},
#endif
};
#undef CYMLP_KERNELS

/* The row in use, set by cymlp_set_variant, and the names the Cython (_kernels.pyx)
 * and tests/native call it by: the variant's number, its kernels, and the names of all
 * variants by number (cymlp_variant_names[v]). */
static const cymlp_kernels *cymlp_kernels_in_use = &cymlp_variants[CYMLP_PORTABLE_V];
#define cymlp_variant ((int)(cymlp_kernels_in_use - cymlp_variants))
#define cymlp_sgemm_impl (cymlp_kernels_in_use->sgemm)
#define cymlp_dgemm_impl (cymlp_kernels_in_use->dgemm)
#define cymlp_spack_rows_impl (cymlp_kernels_in_use->spack_rows)
#define cymlp_dpack_rows_impl (cymlp_kernels_in_use->dpack_rows)
#define cymlp_pack_streams_impl (cymlp_kernels_in_use->pack_streams)
#define cymlp_sapply_impl (cymlp_kernels_in_use->sapply)
#define cymlp_dapply_impl (cymlp_kernels_in_use->dapply)
#define cymlp_vexpf_impl (cymlp_kernels_in_use->vexpf)
#define cymlp_softmaxf_impl (cymlp_kernels_in_use->softmaxf)
#define cymlp_ssgd_step_impl (cymlp_kernels_in_use->ssgd_step)
#define cymlp_dsgd_step_impl (cymlp_kernels_in_use->dsgd_step)
#define cymlp_sadam_step_impl (cymlp_kernels_in_use->sadam_step)
#define cymlp_dadam_step_impl (cymlp_kernels_in_use->dadam_step)
_Static_assert(CYMLP_N_VARIANTS == 4, "cymlp_variant_names lists every row");
#define cymlp_variant_names                                                              \
    ((const char *const[CYMLP_N_VARIANTS]){cymlp_variants[0].name, cymlp_variants[1].name, \
                                           cymlp_variants[2].name, cymlp_variants[3].name})

/* 1 when variant v is compiled in */
static inline int cymlp_variant_built(int v)
{
    return v >= 0 && v < CYMLP_N_VARIANTS && cymlp_variants[v].sgemm != NULL;
}

/* 1 when variant v is compiled in and this CPU can run it */
static inline int cymlp_variant_available(int v)
{
    if (!cymlp_variant_built(v)) return 0;
    const int cpu = cymlp_variants[v].cpu;
    return cpu == 0 || (cymlp_cpu_features() & cpu) == cpu;
}

/* Use variant v (must be available; one not compiled in gives the portable one). */
static inline void cymlp_set_variant(int v)
{
    cymlp_kernels_in_use = &cymlp_variants[cymlp_variant_built(v) ? v : CYMLP_PORTABLE_V];
}

/* Best variant this CPU runs. */
static inline int cymlp_best_variant(void)
{
    for (int v = CYMLP_N_VARIANTS - 1; v > 0; --v)
        if (cymlp_variant_available(v)) return v;
    return CYMLP_PORTABLE_V;
}

static inline int cymlp_have_openmp(void)
{
#ifdef CYMLP_THREADS_OPENMP
    return 1;
#else
    return 0;
#endif
}

static inline int cymlp_max_threads(void) { return cymlp_threads_default(); }

#endif /* CYMLP_GEMM_H */
