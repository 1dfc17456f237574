/* _threads.h: cymlp's threads, one interface over backends chosen at compile time.
 *
 *   typedef void (*cymlp_task_fn)(void *ctx, int t, int n);
 *   int cymlp_parallel_for(int n, cymlp_task_fn fn, void *ctx);
 *       Runs fn(ctx, t, n) exactly once for each t in [0, n), concurrently on up to n
 *       threads (the caller runs tasks too), and returns when every task has returned
 *       (their writes are then visible to the caller). Returns how many threads ran
 *       tasks (1: the caller ran them all, in order). A caller splits its work by t and
 *       n only, never by the threads that turned up, so that results are the same bits
 *       whatever the thread count. Each task sets the FP mode it needs (cymlp_fp_enter).
 *   int cymlp_threads_default(void);      the thread count of n_jobs=None
 *   const char *cymlp_threads_backend(void);  "openmp", "pthreads", "win32" or "none"
 *
 * Backends (define one of these to 1; setup.py's CYMLP_THREADS does):
 *   CYMLP_THREADS_OPENMP    an OpenMP parallel region (needs -fopenmp); default with _OPENMP
 *   CYMLP_THREADS_PTHREADS  a pool of persistent POSIX threads (macOS, Linux)
 *   CYMLP_THREADS_WIN32     the same pool on Win32 threads, SRW locks, condition variables
 *   CYMLP_THREADS_NONE      every task in the caller; the default without _OPENMP
 *
 * The pool (pthreads, win32). Created at the first call with n > 1, it grows to n - 1
 * workers (at most CYMLP_POOL_MAX; more tasks are shared among fewer threads) that live
 * as long as the process. A job is posted by storing a new generation number into one
 * 64-bit word, `claim`. Each task is taken with a compare-and-swap on a word tagged with
 * the job's generation, so it runs once. Task p goes first to its owner, participant p
 * (the caller is 0 and always runs task 0; worker i is i + 1), so that the task of an
 * index keeps running on one core and finds its data (a slice of the weights, its
 * scratch) in that core's cache, as with OpenMP's static schedule; tasks beyond the
 * participants come from a shared counter (`claim`'s low half); then whoever is done
 * takes the tasks still waiting for their owner. So a worker that wakes late finds its
 * task done rather than holding the caller up: the caller waits only for tasks that
 * were taken. Between jobs a worker spins for CYMLP_POOL_SPIN_US microseconds (longer
 * than training's gap between jobs, docs/performance.md), then sleeps on a condition
 * variable; the caller likewise spins, then sleeps, until the last task is done.
 *   - Concurrent callers (several Python threads in fits): one job at a time owns the
 *     pool; a call that finds it taken runs its tasks itself, in order (the same
 *     results, serially, and never a wait on another fit). A call from inside a task
 *     (nesting) does the same, so it cannot deadlock.
 *   - fork (POSIX): the child forgets the parent's pool (pthread_atfork), whose workers
 *     do not exist there, and makes its own at its first parallel call.
 *   - Exit: workers are never joined; they sleep (or spin) in pool code until the process
 *     ends, as OpenMP's do. The module is never unloaded (CPython does not unload
 *     extension modules), so their code stays mapped. cymlp_threads_shutdown() stops and
 *     joins them (tests), when no job is running.
 * Later work (issue 20: one parallel region per epoch, threads meeting at barriers) can
 * build on this: tasks that wait for each other need the n tasks on n distinct threads,
 * which the pool can promise once it owns n - 1 workers, and the caller learns it before
 * posting (a flag in the job, and a serial fallback path when it cannot).
 */
#ifndef CYMLP_THREADS_H
#define CYMLP_THREADS_H

#if !defined(CYMLP_THREADS_OPENMP) && !defined(CYMLP_THREADS_PTHREADS) \
    && !defined(CYMLP_THREADS_WIN32) && !defined(CYMLP_THREADS_NONE)
#ifdef _OPENMP
#define CYMLP_THREADS_OPENMP 1
#else
#define CYMLP_THREADS_NONE 1
#endif
#endif
#if defined(CYMLP_THREADS_OPENMP) + defined(CYMLP_THREADS_PTHREADS) \
        + defined(CYMLP_THREADS_WIN32) + defined(CYMLP_THREADS_NONE) != 1
#error "define one of CYMLP_THREADS_OPENMP, _PTHREADS, _WIN32, _NONE"
#endif
#if defined(CYMLP_THREADS_OPENMP) && !defined(_OPENMP)
#error "CYMLP_THREADS_OPENMP needs the compiler's OpenMP flag (-fopenmp, /openmp)"
#endif
#if defined(CYMLP_THREADS_PTHREADS) || defined(CYMLP_THREADS_WIN32)
#define CYMLP_THREADS_POOL 1
#endif
/* 1 when cymlp_parallel_for can run tasks concurrently */
#ifdef CYMLP_THREADS_NONE
#define CYMLP_THREADS_PARALLEL 0
#else
#define CYMLP_THREADS_PARALLEL 1
#endif

#include <stdint.h>
#include <stdlib.h>

typedef void (*cymlp_task_fn)(void *ctx, int t, int n);

/* OMP_NUM_THREADS's first number (the variable may list one per nesting level), or 0
 * when it is unset or not a positive number */
static inline int cymlp_env_threads(void)
{
    const char *s = getenv("OMP_NUM_THREADS");
    char *end;
    if (s == NULL) return 0;
    const long v = strtol(s, &end, 10);
    if (end == s || v < 1) return 0;
    return v > 4096 ? 4096 : (int)v;
}

/* ---- OpenMP, none ------------------------------------------------------------------ */
#if defined(CYMLP_THREADS_OPENMP)
#include <omp.h>

static inline const char *cymlp_threads_backend(void) { return "openmp"; }
static inline int cymlp_threads_default(void) { return omp_get_max_threads(); }

static inline int cymlp_parallel_for(int n, cymlp_task_fn fn, void *ctx)
{
    int used = 1;
    if (n <= 1) {
        if (n == 1) fn(ctx, 0, 1);
        return 1;
    }
#pragma omp parallel num_threads(n)
    {
        /* the team may be smaller than asked (nested regions, thread limits) */
        const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
        for (int t = tid; t < n; t += nth) fn(ctx, t, n);
        if (tid == 0) used = nth;
    }
    return used;
}
static inline void cymlp_threads_shutdown(void) {}

#elif defined(CYMLP_THREADS_NONE)
static inline const char *cymlp_threads_backend(void) { return "none"; }
static inline int cymlp_threads_default(void) { return 1; }
static inline int cymlp_parallel_for(int n, cymlp_task_fn fn, void *ctx)
{
    for (int t = 0; t < n; ++t) fn(ctx, t, n);
    return 1;
}
static inline void cymlp_threads_shutdown(void) {}

#else
/* ---- the pool: platform layer -------------------------------------------------------- */
#include "_clock.h" /* cymlp_clock_now(): the spin limits */
#if defined(CYMLP_THREADS_WIN32)
#ifndef _WIN32
#error "CYMLP_THREADS_WIN32 is for Windows; use CYMLP_THREADS_PTHREADS"
#endif
/* (<windows.h>, lean and without min/max, comes from _clock.h) */
typedef SRWLOCK cymlp_mutex;
typedef CONDITION_VARIABLE cymlp_cond;
typedef HANDLE cymlp_thread;
static inline void cymlp_mutex_init(cymlp_mutex *m) { InitializeSRWLock(m); }
static inline void cymlp_mutex_lock(cymlp_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void cymlp_mutex_unlock(cymlp_mutex *m) { ReleaseSRWLockExclusive(m); }
static inline void cymlp_cond_init(cymlp_cond *c) { InitializeConditionVariable(c); }
static inline void cymlp_cond_wait(cymlp_cond *c, cymlp_mutex *m)
{
    SleepConditionVariableSRW(c, m, INFINITE, 0);
}
static inline void cymlp_cond_broadcast(cymlp_cond *c) { WakeAllConditionVariable(c); }
static inline void cymlp_cond_signal(cymlp_cond *c) { WakeConditionVariable(c); }
static DWORD WINAPI cymlp_pool_main_win32(LPVOID arg);
/* 1 on success; a 4 MiB stack (reserved, not committed), as OpenMP runtimes give theirs */
static inline int cymlp_thread_start(cymlp_thread *th, void *arg)
{
    *th = CreateThread(NULL, (SIZE_T)4 << 20, cymlp_pool_main_win32, arg,
                       STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    return *th != NULL;
}
static inline void cymlp_thread_join(cymlp_thread th)
{
    WaitForSingleObject(th, INFINITE);
    CloseHandle(th);
}
static inline int cymlp_cpu_count(void)
{
#if defined(_WIN32_WINNT) && _WIN32_WINNT >= 0x0601
    const DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
#else
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    const DWORD n = si.dwNumberOfProcessors;
#endif
    return n > 0 ? (int)n : 1;
}
static inline void cymlp_pool_atfork(void) {} /* (no fork on Windows) */

#else /* pthreads */
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif
typedef pthread_mutex_t cymlp_mutex;
typedef pthread_cond_t cymlp_cond;
typedef pthread_t cymlp_thread;
static inline void cymlp_mutex_init(cymlp_mutex *m) { pthread_mutex_init(m, NULL); }
static inline void cymlp_mutex_lock(cymlp_mutex *m) { pthread_mutex_lock(m); }
static inline void cymlp_mutex_unlock(cymlp_mutex *m) { pthread_mutex_unlock(m); }
static inline void cymlp_cond_init(cymlp_cond *c) { pthread_cond_init(c, NULL); }
static inline void cymlp_cond_wait(cymlp_cond *c, cymlp_mutex *m) { pthread_cond_wait(c, m); }
static inline void cymlp_cond_broadcast(cymlp_cond *c) { pthread_cond_broadcast(c); }
static inline void cymlp_cond_signal(cymlp_cond *c) { pthread_cond_signal(c); }
static void *cymlp_pool_main_posix(void *arg);
/* 1 on success. Workers get a 4 MiB stack (macOS gives new threads 512 KiB) and block
 * the asynchronous signals, so that those go to the Python threads that handle them (a
 * fault in a worker still reaches faulthandler). */
static inline int cymlp_thread_start(cymlp_thread *th, void *arg)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;
    if (pthread_attr_init(&attr) != 0) return 0;
    pthread_attr_setstacksize(&attr, (size_t)4 << 20);
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGABRT);
    sigdelset(&all, SIGTRAP);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* (a new thread inherits the mask) */
    rc = pthread_create(th, &attr, cymlp_pool_main_posix, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc == 0;
}
static inline void cymlp_thread_join(cymlp_thread th) { pthread_join(th, NULL); }
static inline int cymlp_cpu_count(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set; /* the CPUs this process may run on (taskset, cgroup cpusets) */
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
static void cymlp_pool_forget(void);
static inline void cymlp_pool_atfork(void) { pthread_atfork(NULL, NULL, cymlp_pool_forget); }
#endif

/* atomics: GCC/Clang builtins (also MinGW and clang-cl), or MSVC on x64 */
#if defined(__GNUC__) || defined(__clang__)
#define CYMLP_LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CYMLP_LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define CYMLP_LOAD_SC(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define CYMLP_STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define CYMLP_STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CYMLP_STORE_SC(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define CYMLP_ADD_SC(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
/* compare-and-swap: 1 when *p was *expected and is now desired */
#define CYMLP_CAS(p, expected, desired)                                                  \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST,         \
                                __ATOMIC_RELAXED)
#else /* (MSVC's cl.exe: build with clang-cl, or CYMLP_THREADS=openmp / none) */
#error "the pool needs GCC or Clang atomics (GCC, Clang, clang-cl and MinGW have them)"
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <emmintrin.h>
#define CYMLP_PAUSE() _mm_pause()
/* The caller's floating-point controls (MXCSR and the x87 control word, in one word),
 * which a worker takes on while it runs the caller's tasks, so that a task gives the
 * same bits on any thread: libm's exp may use the x87 unit, whose precision control is
 * per thread (under Wine, 64-bit in the main thread and 53-bit in new ones). */
static inline uint64_t cymlp_fpenv_get(void)
{
    unsigned short x87;
    __asm__ __volatile__("fnstcw %0" : "=m"(x87));
    return (uint64_t)_mm_getcsr() | (uint64_t)x87 << 32;
}
static inline void cymlp_fpenv_set(uint64_t env)
{
    const unsigned short x87 = (unsigned short)(env >> 32);
    _mm_setcsr((unsigned int)env);
    __asm__ __volatile__("fldcw %0" : : "m"(x87));
}
#elif (defined(__aarch64__) || defined(__arm__)) && (defined(__GNUC__) || defined(__clang__))
#define CYMLP_PAUSE() __asm__ __volatile__("yield")
#else
#define CYMLP_PAUSE() ((void)0)
#endif
#if !(defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86))
static inline uint64_t cymlp_fpenv_get(void) { return 0; } /* (new threads inherit it) */
static inline void cymlp_fpenv_set(uint64_t env) { (void)env; }
#endif

/* ---- the pool ------------------------------------------------------------------------ */
#ifndef CYMLP_POOL_MAX
#define CYMLP_POOL_MAX 255 /* workers */
#endif
#ifndef CYMLP_POOL_SPIN_US
/* busy-wait before sleeping, microseconds; none while the pool has as many workers as
 * there are CPUs (they would spin in the way of the threads with work, as libgomp's
 * throttled spinning avoids too) */
#define CYMLP_POOL_SPIN_US 200
#endif

typedef struct cymlp_pool {
    /* the job, written by the caller while `claim` holds an odd (closed) generation,
     * read by workers before they take a task of it (see cymlp_pool_run) */
    cymlp_task_fn fn;
    void *ctx;
    int n;
    uint64_t fpenv; /* the caller's cymlp_fpenv_get() */
    int nown; /* tasks [0, nown) have an owner: participant t (caller 0, worker i: i + 1) */
    char pad0[64];
    uint64_t claim; /* generation << 32 | next shared task (from nown); odd generation:
                     * job being set up */
    char pad1[64 - sizeof(uint64_t)];
    int pending;       /* tasks of the job not yet finished */
    int joined;        /* workers that ran a task of the job */
    int sleepers;      /* workers asleep on `wake` */
    int caller_asleep; /* the caller is asleep on `done` */
    int stop;          /* cymlp_threads_shutdown: workers return */
    char pad2[64];
    int nworkers; /* (written by the caller, read by workers) */
    int ncpu;     /* CPUs available at creation */
    cymlp_mutex lock;
    cymlp_cond wake, done;
    cymlp_thread threads[CYMLP_POOL_MAX];
    /* own[t][0]: generation << 32 | 1 once task t < nown is taken (a cache line each) */
    uint64_t own[CYMLP_POOL_MAX + 1][8];
} cymlp_pool;

typedef struct { /* a new worker's argument (freed by it) */
    cymlp_pool *pool;
    int me;        /* its participant number: its index + 1 */
    uint32_t seen; /* the generation of the last job it need not run */
} cymlp_pool_start;

static cymlp_pool *cymlp_pool_ptr = NULL; /* made by the first parallel call */
static int cymlp_pool_busy = 0;           /* 1 while a caller owns the pool */
static int cymlp_pool_atfork_done = 0;

/* The floating-point controls of a worker for one job: the job's (the caller's, taken on
 * at the worker's first task of it) and the worker's own (given back after the job). */
typedef struct { uint64_t job, own; } cymlp_fpjob;

/* Run task t of the job (fields fn, ctx, n) that this thread has taken. */
static inline void cymlp_pool_task(cymlp_pool *p, cymlp_task_fn fn, void *ctx, int t, int n,
                                   int *ran, int worker, cymlp_fpjob *fp)
{
    if (!(*ran)++ && worker) {
        CYMLP_ADD_SC(&p->joined, 1); /* (before its pending) */
        fp->own = cymlp_fpenv_get();
        cymlp_fpenv_set(fp->job);
    }
    fn(ctx, t, n);
    if (CYMLP_ADD_SC(&p->pending, -1) == 0 && CYMLP_LOAD_SC(&p->caller_asleep)) {
        cymlp_mutex_lock(&p->lock);
        cymlp_cond_signal(&p->done);
        cymlp_mutex_unlock(&p->lock);
    }
}

/* 1 when this thread took owned task t of job gen */
static inline int cymlp_pool_take_own(cymlp_pool *p, int t, uint32_t gen)
{
    uint64_t free_ = (uint64_t)gen << 32;
    return CYMLP_LOAD_RELAXED(&p->own[t][0]) == free_
           && CYMLP_CAS(&p->own[t][0], &free_, free_ | 1u);
}

/* Take and run tasks of job `gen` as participant `me` until none is left: its own task,
 * shared ones, then those whose owners have not come; returns how many it ran.
 * The job's fields are read before the compare-and-swaps that take tasks, and the caller
 * closes the job (odd generation) before it rewrites them for the next: if a field read
 * here (acquire) is a later job's (written with release after the closing), every task
 * of this job is taken already (the caller posts only when all are done), and a swap
 * expecting this generation untaken fails, so a task runs only with its own job's
 * fields. */
static inline int cymlp_pool_run(cymlp_pool *p, uint32_t gen, int me)
{
    int ran = 0;
    uint64_t w = CYMLP_LOAD_ACQ(&p->claim);
    if ((uint32_t)(w >> 32) != gen) return 0;
    const cymlp_task_fn fn = CYMLP_LOAD_ACQ(&p->fn);
    void *const ctx = CYMLP_LOAD_ACQ(&p->ctx);
    const int n = CYMLP_LOAD_ACQ(&p->n), nown = CYMLP_LOAD_ACQ(&p->nown);
    cymlp_fpjob fp = {CYMLP_LOAD_ACQ(&p->fpenv), 0};
    if (me < nown && cymlp_pool_take_own(p, me, gen))
        cymlp_pool_task(p, fn, ctx, me, n, &ran, me > 0, &fp);
    for (;;) { /* shared tasks */
        w = CYMLP_LOAD_ACQ(&p->claim);
        const uint32_t t = (uint32_t)w;
        if ((uint32_t)(w >> 32) != gen) goto out;
        if (t >= (uint32_t)n) break;
        if (CYMLP_CAS(&p->claim, &w, w + 1))
            cymlp_pool_task(p, fn, ctx, (int)t, n, &ran, me > 0, &fp);
    }
    for (int k = me < nown; k < nown; ++k) { /* owned tasks not started yet */
        const int t = (me + k) % nown;
        if (cymlp_pool_take_own(p, t, gen)) cymlp_pool_task(p, fn, ctx, t, n, &ran, me > 0, &fp);
    }
out:
    if (ran && me > 0) cymlp_fpenv_set(fp.own);
    return ran;
}

/* seconds to spin before sleeping */
static inline double cymlp_pool_spin(cymlp_pool *p)
{
    return CYMLP_LOAD_RELAXED(&p->nworkers) < p->ncpu ? 1e-6 * CYMLP_POOL_SPIN_US : 0.0;
}

/* a posted job not yet seen: open (even) generation other than `seen` */
static inline int cymlp_pool_new_job(uint64_t w, uint32_t seen)
{
    const uint32_t g = (uint32_t)(w >> 32);
    return g != seen && (g & 1u) == 0;
}

static void cymlp_pool_worker(cymlp_pool *p, int me, uint32_t seen)
{
    for (;;) {
        uint64_t w = CYMLP_LOAD_ACQ(&p->claim);
        if (!cymlp_pool_new_job(w, seen)) { /* spin a while, then sleep */
            const double spin = cymlp_pool_spin(p);
            const double until = spin > 0 ? cymlp_clock_now() + spin : 0;
            for (unsigned k = 1;; ++k) {
                CYMLP_PAUSE();
                w = CYMLP_LOAD_ACQ(&p->claim);
                if (cymlp_pool_new_job(w, seen) || CYMLP_LOAD_ACQ(&p->stop)) break;
                if (spin == 0 || (k % 64 == 0 && cymlp_clock_now() > until)) {
                    /* caller: open the job, then read sleepers; here: count in
                     * sleepers, then read claim (both seq_cst), so one sees the other */
                    cymlp_mutex_lock(&p->lock);
                    CYMLP_ADD_SC(&p->sleepers, 1);
                    while (!cymlp_pool_new_job(w = CYMLP_LOAD_SC(&p->claim), seen)
                           && !CYMLP_LOAD_SC(&p->stop))
                        cymlp_cond_wait(&p->wake, &p->lock);
                    CYMLP_ADD_SC(&p->sleepers, -1);
                    cymlp_mutex_unlock(&p->lock);
                    break;
                }
            }
        }
        if (CYMLP_LOAD_ACQ(&p->stop)) return;
        seen = (uint32_t)(w >> 32);
        cymlp_pool_run(p, seen, me);
    }
}

#if defined(CYMLP_THREADS_WIN32)
static DWORD WINAPI cymlp_pool_main_win32(LPVOID arg)
#else
static void *cymlp_pool_main_posix(void *arg)
#endif
{
    const cymlp_pool_start s = *(const cymlp_pool_start *)arg;
    free(arg);
    cymlp_pool_worker(s.pool, s.me, s.seen);
    return 0;
}

#if !defined(CYMLP_THREADS_WIN32)
/* fork child: the parent's workers do not exist here; make a new pool when needed (the
 * old one's memory is left as it is: its lock may have been held at the fork) */
static void cymlp_pool_forget(void)
{
    cymlp_pool_ptr = NULL;
    cymlp_pool_busy = 0;
}
#endif

/* Start workers until there are `want` (caller owns the pool); fewer when a thread
 * cannot be made. */
static inline void cymlp_pool_grow(cymlp_pool *p, int want)
{
    if (want > CYMLP_POOL_MAX) want = CYMLP_POOL_MAX;
    const uint32_t gen = (uint32_t)(CYMLP_LOAD_RELAXED(&p->claim) >> 32);
    while (p->nworkers < want) {
        cymlp_pool_start *s = (cymlp_pool_start *)malloc(sizeof *s);
        if (s == NULL) return;
        s->pool = p;
        s->me = p->nworkers + 1;
        s->seen = gen;
        if (!cymlp_thread_start(&p->threads[p->nworkers], s)) {
            free(s);
            return;
        }
        CYMLP_STORE_RELAXED(&p->nworkers, p->nworkers + 1);
    }
}

static inline cymlp_pool *cymlp_pool_get(void) /* (caller owns the pool) */
{
    if (cymlp_pool_ptr == NULL) {
        cymlp_pool *p = (cymlp_pool *)calloc(1, sizeof *p);
        if (p == NULL) return NULL;
        cymlp_mutex_init(&p->lock);
        cymlp_cond_init(&p->wake);
        cymlp_cond_init(&p->done);
        p->ncpu = cymlp_cpu_count();
        if (!cymlp_pool_atfork_done) {
            cymlp_pool_atfork_done = 1;
            cymlp_pool_atfork();
        }
        cymlp_pool_ptr = p;
    }
    return cymlp_pool_ptr;
}

static inline int cymlp_parallel_for(int n, cymlp_task_fn fn, void *ctx)
{
    int expected = 0;
    cymlp_pool *p;
    if (n <= 1 || !CYMLP_CAS(&cymlp_pool_busy, &expected, 1)) {
        for (int t = 0; t < n; ++t) fn(ctx, t, n); /* one task, nested, or pool taken */
        return 1;
    }
    p = cymlp_pool_get();
    if (p != NULL) cymlp_pool_grow(p, n - 1);
    if (p == NULL || p->nworkers == 0) {
        for (int t = 0; t < n; ++t) fn(ctx, t, n);
        CYMLP_STORE_REL(&cymlp_pool_busy, 0);
        return 1;
    }
    /* post: close the current job, write the new one, open it */
    const uint32_t gen = (uint32_t)(CYMLP_LOAD_RELAXED(&p->claim) >> 32) + 2u;
    CYMLP_STORE_SC(&p->claim, (uint64_t)(gen - 1u) << 32 | 0xFFFFFFFFu);
    CYMLP_STORE_REL(&p->fn, fn);
    CYMLP_STORE_REL(&p->ctx, ctx);
    const int nown = n < p->nworkers + 1 ? n : p->nworkers + 1;
    CYMLP_STORE_REL(&p->n, n);
    CYMLP_STORE_REL(&p->fpenv, cymlp_fpenv_get());
    CYMLP_STORE_REL(&p->nown, nown);
    CYMLP_STORE_RELAXED(&p->pending, n);
    CYMLP_STORE_RELAXED(&p->joined, 0);
    for (int t = 0; t < nown; ++t) CYMLP_STORE_RELAXED(&p->own[t][0], (uint64_t)gen << 32);
    CYMLP_STORE_RELAXED(&p->own[0][0], (uint64_t)gen << 32 | 1u); /* task 0: the caller's */
    CYMLP_STORE_SC(&p->claim, (uint64_t)gen << 32 | (uint32_t)nown);
    const int sleepers = CYMLP_LOAD_SC(&p->sleepers);
    if (sleepers > 0) { /* wake those the job may need (the others sleep on) */
        cymlp_mutex_lock(&p->lock);
        if (sleepers <= n - 1)
            cymlp_cond_broadcast(&p->wake);
        else
            for (int k = 0; k < n - 1; ++k) cymlp_cond_signal(&p->wake);
        cymlp_mutex_unlock(&p->lock);
    }
    int ran = 0;
    cymlp_pool_task(p, fn, ctx, 0, n, &ran, 0, NULL);
    ran += cymlp_pool_run(p, gen, 0);
    /* wait for the tasks the workers took: spin a while, then sleep */
    if (CYMLP_LOAD_ACQ(&p->pending) != 0) {
        const double spin = cymlp_pool_spin(p);
        const double until = spin > 0 ? cymlp_clock_now() + spin : 0;
        for (unsigned k = 1; CYMLP_LOAD_ACQ(&p->pending) != 0; ++k) {
            CYMLP_PAUSE();
            if (spin == 0 || (k % 64 == 0 && cymlp_clock_now() > until)) {
                cymlp_mutex_lock(&p->lock);
                CYMLP_STORE_SC(&p->caller_asleep, 1);
                while (CYMLP_LOAD_SC(&p->pending) != 0) cymlp_cond_wait(&p->done, &p->lock);
                CYMLP_STORE_SC(&p->caller_asleep, 0);
                cymlp_mutex_unlock(&p->lock);
                break;
            }
        }
    }
    const int used = (ran > 0) + CYMLP_LOAD_ACQ(&p->joined);
    CYMLP_STORE_REL(&cymlp_pool_busy, 0);
    return used;
}

/* Stop and join the workers and free the pool (the next parallel call makes a new one).
 * Waits for a running job to end; not from inside a task. */
static inline void cymlp_threads_shutdown(void)
{
    int expected = 0;
    while (!CYMLP_CAS(&cymlp_pool_busy, &expected, 1)) {
        expected = 0;
        CYMLP_PAUSE();
    }
    cymlp_pool *p = cymlp_pool_ptr;
    if (p != NULL) {
        cymlp_mutex_lock(&p->lock);
        CYMLP_STORE_SC(&p->stop, 1);
        cymlp_cond_broadcast(&p->wake);
        cymlp_mutex_unlock(&p->lock);
        for (int i = 0; i < p->nworkers; ++i) cymlp_thread_join(p->threads[i]);
        cymlp_pool_ptr = NULL;
        free(p);
    }
    CYMLP_STORE_REL(&cymlp_pool_busy, 0);
}

static inline const char *cymlp_threads_backend(void)
{
#if defined(CYMLP_THREADS_WIN32)
    return "win32";
#else
    return "pthreads";
#endif
}

/* OMP_NUM_THREADS when set (as OpenMP builds honour it), else the CPUs available */
static inline int cymlp_threads_default(void)
{
    const int env = cymlp_env_threads();
    return env > 0 ? env : cymlp_cpu_count();
}
#endif /* pool */

#endif /* CYMLP_THREADS_H */
