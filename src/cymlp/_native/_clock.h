/* cymlp_clock_now(): monotonic wall-clock seconds, at sub-microsecond resolution, for
 * everything that times itself: the engine's profile and its thread-count chooser
 * (one batch of the paper's network is ~0.3 ms), the thread pool's spin limit and the
 * core-to-core probe (cymlp._testing). QueryPerformanceCounter on Windows (clock() there
 * ticks in milliseconds), CLOCK_MONOTONIC elsewhere. Stateless, so any module may
 * include it. */
#ifndef CYMLP_CLOCK_H
#define CYMLP_CLOCK_H

#if defined(_WIN32)
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
static inline double cymlp_clock_now(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f); /* (a constant, read from shared memory) */
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
}
#else
#include <time.h>
static inline double cymlp_clock_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
#endif

#endif /* CYMLP_CLOCK_H */
