/* _target.h: the compilers and CPUs the native code is written for, in one place.
 *
 * The vector kernels need GCC vector extensions and target attributes: GCC, clang, and
 * clang-cl (which defines __clang__ and _MSC_VER, not __GNUC__; the Windows wheels are
 * built with it). Define CYMLP_PORTABLE (or use a compiler without them: plain MSVC,
 * cl.exe) to build the plain-C kernel only. CYMLP_X86 marks an x86-64 build with the
 * vector kernels: its intrinsics and the AVX2 / AVX-512 target attributes.
 */
#ifndef CYMLP_TARGET_H
#define CYMLP_TARGET_H

#if !defined(__GNUC__) && !defined(__clang__) && !defined(CYMLP_PORTABLE)
#define CYMLP_PORTABLE 1
#endif
#if defined(_MSC_VER)
#define restrict __restrict
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define CYMLP_UNROLL _Pragma("GCC unroll 16")
#else
#define CYMLP_UNROLL
#endif
/* CYMLP_MAYBE_UNUSED: a function a header defines for its includers, which need not call
 * it (e.g. a variant's entry points, reached through _gemm.h's table) */
#if defined(__GNUC__) || defined(__clang__) /* (clang-cl: __clang__ only) */
#define CYMLP_INLINE static inline __attribute__((always_inline))
#define CYMLP_MAYBE_UNUSED __attribute__((unused))
#else
#define CYMLP_INLINE static inline
#define CYMLP_MAYBE_UNUSED
#endif

#if !defined(CYMLP_PORTABLE) && (defined(__x86_64__) || defined(_M_X64))
#define CYMLP_X86 1
#include <immintrin.h>
#if defined(_MSC_VER) && defined(__clang__)
/* clang-cl's immintrin.h (in older LLVM releases, e.g. 14) includes only the headers of
 * the features enabled on the command line, not those the target-attribute kernels use */
#include <smmintrin.h>
#include <avxintrin.h>
#include <avx2intrin.h>
#include <fmaintrin.h>
#include <bmi2intrin.h>
#include <avx512fintrin.h>
#endif
#define CYMLP_AVX2_ATTR __attribute__((target("avx2,fma")))
#define CYMLP_AVX512_ATTR \
    __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,popcnt,bmi2")))
#endif

/* Denormal floats are slow on x86, and Adam's moments of always-zero inputs' weights decay
 * into them (docs/performance.md): cymlp's loops run with flush-to-zero and
 * denormals-are-zero on. cymlp_fp_enter() sets them and returns the caller's mode, which
 * cymlp_fp_leave() restores. Per thread. */
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
static inline unsigned long cymlp_fp_enter(void)
{
    unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void cymlp_fp_leave(unsigned long old) { _mm_setcsr((unsigned int)old); }
#elif defined(__aarch64__) && defined(__GNUC__)
static inline unsigned long cymlp_fp_enter(void)
{
    unsigned long old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1ul << 24))); /* FZ */
    return old;
}
static inline void cymlp_fp_leave(unsigned long old)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old));
}
#else
static inline unsigned long cymlp_fp_enter(void) { return 0; }
static inline void cymlp_fp_leave(unsigned long old) { (void)old; }
#endif

#endif /* CYMLP_TARGET_H */
