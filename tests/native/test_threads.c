/* test_threads.c: cymlp_parallel_for (src/cymlp/_native/_threads.h) on its own, without Python.
 *
 * Builds with no flags beyond the include path; it picks the native pool backend itself
 * (win32 on Windows, pthreads elsewhere) unless a CYMLP_THREADS_* macro is given:
 *   gcc -O2 -I src/cymlp/_native tests/native/test_threads.c -o /tmp/test_threads
 *       (glibc >= 2.34 has pthreads in libc; older ones need -pthread)
 *   x86_64-w64-mingw32-gcc -O2 -I src/cymlp/_native tests/native/test_threads.c -o test_threads.exe
 *       WINEPREFIX=/tmp/wine-x WINEDEBUG=-all wine64 test_threads.exe
 *   gcc -O2 -fopenmp -DCYMLP_THREADS_OPENMP ...   or   -DCYMLP_THREADS_NONE ...
 *   gcc -O1 -g -fsanitize=thread ...              (the pool's atomics under TSan)
 * Prints one line per failed check and a last line "N passed, M failed"; exit status 1
 * when a check failed.
 */
#if !defined(CYMLP_THREADS_OPENMP) && !defined(CYMLP_THREADS_PTHREADS) \
    && !defined(CYMLP_THREADS_WIN32) && !defined(CYMLP_THREADS_NONE)
#ifdef _WIN32
#define CYMLP_THREADS_WIN32 1
#else
#define CYMLP_THREADS_PTHREADS 1
#endif
#endif
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, as in Python.h's builds */
#endif

#include "_threads.h"

#include <stdio.h>
#include <string.h>
#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#endif

static int passed = 0, failed = 0;
#define UNUSED_OK __attribute__((unused)) /* (helpers some backends' tests do not use) */

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (cond) {                                                                       \
            ++passed;                                                                     \
        } else {                                                                          \
            ++failed;                                                                     \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
            fflush(stdout);                                                               \
        }                                                                                 \
    } while (0)

/* ---- small portable helpers (test only) ---------------------------------------------- */
static void add_int(int *p, int v) { __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST); }
UNUSED_OK static int load_int(int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }

static double now_s(void)
{
#ifdef _WIN32
    LARGE_INTEGER c, f;
    QueryPerformanceCounter(&c);
    QueryPerformanceFrequency(&f);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
#endif
}

UNUSED_OK static void sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
#endif
}

#ifdef CYMLP_THREADS_POOL
static void set_env(const char *name, const char *value) /* value NULL: unset */
{
#ifdef _WIN32
    char buf[256];
    snprintf(buf, sizeof buf, "%s=%s", name, value ? value : "");
    _putenv(buf);
#else
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
#endif
}
#endif

typedef struct {
    void (*fn)(void *);
    void *arg;
} thread_arg;

#ifdef _WIN32
typedef HANDLE test_thread;
static DWORD WINAPI thread_main(LPVOID a)
{
    thread_arg *ta = (thread_arg *)a;
    ta->fn(ta->arg);
    return 0;
}
static void start_thread(test_thread *th, thread_arg *a)
{
    *th = CreateThread(NULL, 0, thread_main, a, 0, NULL);
}
static void join_thread(test_thread th)
{
    WaitForSingleObject(th, INFINITE);
    CloseHandle(th);
}
UNUSED_OK static unsigned long self_id(void) { return (unsigned long)GetCurrentThreadId(); }
#else
typedef pthread_t test_thread;
static void *thread_main(void *a)
{
    thread_arg *ta = (thread_arg *)a;
    ta->fn(ta->arg);
    return NULL;
}
static void start_thread(test_thread *th, thread_arg *a)
{
    pthread_create(th, NULL, thread_main, a);
}
static void join_thread(test_thread th) { pthread_join(th, NULL); }
UNUSED_OK static unsigned long self_id(void)
{
    return (unsigned long)(uintptr_t)pthread_self();
}
#endif

/* ---- tasks --------------------------------------------------------------------------- */
#define MAXN 1024

typedef struct {
    int count[MAXN]; /* runs of each t */
    int bad_n;       /* calls whose n was not the job's */
    int n;
    int spin;        /* busy work per task (loop iterations) */
    volatile double sink[MAXN]; /* (each task's result, so the loop is not dropped) */
} count_job;

static void count_task(void *ctx, int t, int n)
{
    count_job *j = (count_job *)ctx;
    if (n != j->n || t < 0 || t >= n) {
        add_int(&j->bad_n, 1);
        return;
    }
    double x = t;
    for (int k = 0; k < j->spin; ++k) x = x * 0.999 + 1.0;
    j->sink[t] = x;
    add_int(&j->count[t], 1);
}

/* runs a job of n tasks; 1 when every t ran exactly once */
static int run_count(count_job *j, int n, int spin, int *used)
{
    memset(j->count, 0, sizeof j->count);
    j->bad_n = 0;
    j->n = n;
    j->spin = spin;
    const int u = cymlp_parallel_for(n, count_task, j);
    if (used) *used = u;
    if (j->bad_n != 0) return 0;
    for (int t = 0; t < n; ++t)
        if (j->count[t] != 1) return 0;
    return 1;
}

/* every t once, for n from 0 to past the cores, with and without work */
static void test_each_t_once(void)
{
    static count_job j;
    const int cores = cymlp_threads_default();
    for (int spin = 0; spin <= 2000; spin += 2000)
        for (int n = 0; n <= 3 * cores + 5 && n <= MAXN; ++n) {
            int used = 0;
            CHECK(run_count(&j, n, spin, &used), "n=%d spin=%d: a task ran != once", n, spin);
            CHECK(used >= 1 && used <= (n > 1 ? n : 1), "n=%d: %d threads reported", n, used);
        }
}

/* many jobs in a row, of varying sizes (stale workers must not run a later job's task) */
static void test_many_jobs(void)
{
    static count_job j;
    int ok = 1, k;
    for (k = 0; k < 100000 && ok; ++k) ok = run_count(&j, 2 + k % 5, k % 7 == 0 ? 300 : 0, NULL);
    CHECK(ok, "job %d of 100000 (n=%d): a task ran != once", k, 2 + (k - 1) % 5);
}

/* n far above the cores and the pool's size limit */
static void test_large_n(void)
{
    static count_job j;
    CHECK(run_count(&j, MAXN, 100, NULL), "n=%d: a task ran != once", MAXN);
    CHECK(run_count(&j, 300, 0, NULL), "n=300: a task ran != once");
}

#if CYMLP_THREADS_PARALLEL
/* two tasks that wait (up to 2 s) to see each other start: they did run concurrently */
typedef struct {
    int started;
    int met;
    unsigned long who[2];
} meet_job;

static void meet_task(void *ctx, int t, int n)
{
    meet_job *m = (meet_job *)ctx;
    (void)n;
    m->who[t] = self_id();
    add_int(&m->started, 1);
    const double until = now_s() + 2.0;
    while (load_int(&m->started) < 2 && now_s() < until) sleep_ms(0);
    if (load_int(&m->started) >= 2) add_int(&m->met, 1);
}
#endif

static void test_concurrent_tasks(void)
{
#if CYMLP_THREADS_PARALLEL
    int ok = 0, used = 0;
    for (int attempt = 0; attempt < 3 && !ok; ++attempt) {
        meet_job m = {0, 0, {0, 0}};
        used = cymlp_parallel_for(2, meet_task, &m);
        ok = m.met == 2 && m.who[0] != m.who[1] && used == 2;
    }
    CHECK(ok, "two tasks did not run on two threads at once (%d threads reported)", used);
#endif
}

#ifdef CYMLP_THREADS_POOL
/* affinity: task t goes to participant t first; task 0 always runs on the caller */
typedef struct {
    unsigned long who[4];
    int spin;
    volatile double sink[4];
} who_job;

static void who_task(void *ctx, int t, int n)
{
    who_job *j = (who_job *)ctx;
    (void)n;
    double x = t;
    for (int k = 0; k < j->spin; ++k) x = x * 0.999 + 1.0;
    j->sink[t] = x;
    j->who[t] = self_id();
}

static void test_affinity(void)
{
    who_job j;
    int on_caller = 0, jobs = 200;
    memset(&j, 0, sizeof j);
    j.spin = 20000;
    for (int k = 0; k < jobs; ++k) {
        cymlp_parallel_for(2, who_task, &j);
        on_caller += j.who[0] == self_id();
    }
    CHECK(on_caller == jobs, "task 0 ran on the caller in %d of %d jobs", on_caller, jobs);
}
#endif

/* several callers at once, each checking its own jobs (the pool runs one caller's job at
 * a time; the others run theirs in their own thread) */
typedef struct {
    count_job job;
    int ok;
    int jobs;
    int parallel; /* jobs that ran on more than one thread */
} caller_state;

static void caller_main(void *arg)
{
    caller_state *c = (caller_state *)arg;
    c->ok = 1;
    for (int k = 0; k < c->jobs && c->ok; ++k) {
        int used;
        c->ok = run_count(&c->job, 2 + k % 4, k % 3 == 0 ? 500 : 20, &used);
        c->parallel += used > 1;
    }
}

static void test_concurrent_callers(void)
{
    enum { CALLERS = 4 };
    static caller_state c[CALLERS];
    thread_arg a[CALLERS];
    test_thread th[CALLERS];
    int ok = 1, parallel = 0;
    for (int i = 0; i < CALLERS; ++i) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].jobs = 20000;
        a[i].fn = caller_main;
        a[i].arg = &c[i];
        start_thread(&th[i], &a[i]);
    }
    for (int i = 0; i < CALLERS; ++i) join_thread(th[i]);
    for (int i = 0; i < CALLERS; ++i) {
        ok &= c[i].ok;
        parallel += c[i].parallel;
    }
    CHECK(ok, "concurrent callers: a task ran != once");
    printf("concurrent callers: %d of %d jobs ran on more than one thread\n", parallel,
           CALLERS * c[0].jobs);
}

/* a parallel call from inside a task runs (serially, for the pool) and completes */
typedef struct {
    count_job inner[8];
    int ok[8];
    int inner_used[8];
} nest_job;

static void nest_task(void *ctx, int t, int n)
{
    nest_job *nj = (nest_job *)ctx;
    (void)n;
    nj->ok[t] = run_count(&nj->inner[t], 5, 50, &nj->inner_used[t]);
}

static void test_nested(void)
{
    static nest_job nj;
    memset(&nj, 0, sizeof nj);
    const int used = cymlp_parallel_for(8, nest_task, &nj);
    int ok = 1;
    for (int t = 0; t < 8; ++t) ok &= nj.ok[t];
    CHECK(ok, "nested: an inner task ran != once");
    CHECK(used >= 1, "nested: outer reported %d threads", used);
#ifdef CYMLP_THREADS_POOL
    int serial = 1;
    for (int t = 0; t < 8; ++t) serial &= nj.inner_used[t] == 1;
    CHECK(serial, "nested: the pool ran an inner job on several threads");
#endif
}

/* stop and join the workers, then make a new pool */
static void test_shutdown_restart(void)
{
    static count_job j;
    CHECK(run_count(&j, 4, 100, NULL), "before shutdown");
    cymlp_threads_shutdown();
    CHECK(run_count(&j, 4, 100, NULL), "after shutdown: a task ran != once");
    cymlp_threads_shutdown();
    cymlp_threads_shutdown(); /* (no pool: nothing to do) */
    CHECK(run_count(&j, 3, 100, NULL), "after a second shutdown");
}

/* POSIX: a child of fork makes its own pool (the parent's workers are not there) */
static void test_fork(void)
{
#if !defined(_WIN32) && defined(CYMLP_THREADS_POOL) && !defined(__SANITIZE_THREAD__)
    /* (ThreadSanitizer does not support threads after a multi-threaded fork) */
    static count_job j;
    CHECK(run_count(&j, 4, 100, NULL), "before fork");
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        int ok = 1, k;
        for (k = 0; k < 2000 && ok; ++k) ok = run_count(&j, 2 + k % 3, 50, NULL);
        meet_job m = {0, 0, {0, 0}};
        const int used = cymlp_parallel_for(2, meet_task, &m);
        _exit(ok && used == 2 && m.met == 2 ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0, "fork failed");
    if (pid > 0) {
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "child of fork: parallel jobs failed or hung (status %d)", status);
    }
    CHECK(run_count(&j, 4, 100, NULL), "parent after fork");
#endif
}

static void test_default_threads(void)
{
    const int n = cymlp_threads_default();
    CHECK(n >= 1, "cymlp_threads_default() = %d", n);
#ifdef CYMLP_THREADS_POOL
    set_env("OMP_NUM_THREADS", "3");
    CHECK(cymlp_threads_default() == 3, "OMP_NUM_THREADS=3 gave %d", cymlp_threads_default());
    set_env("OMP_NUM_THREADS", "5,2");
    CHECK(cymlp_threads_default() == 5, "OMP_NUM_THREADS=5,2 gave %d", cymlp_threads_default());
    set_env("OMP_NUM_THREADS", "zero");
    CHECK(cymlp_threads_default() == cymlp_cpu_count(), "OMP_NUM_THREADS=zero: not the CPUs");
    set_env("OMP_NUM_THREADS", NULL);
    CHECK(cymlp_threads_default() == cymlp_cpu_count(), "unset: %d, CPUs %d",
          cymlp_threads_default(), cymlp_cpu_count());
#endif
}

static void test_backend_name(void)
{
    const char *b = cymlp_threads_backend();
#if defined(CYMLP_THREADS_WIN32)
    CHECK(strcmp(b, "win32") == 0, "backend %s", b);
#elif defined(CYMLP_THREADS_PTHREADS)
    CHECK(strcmp(b, "pthreads") == 0, "backend %s", b);
#elif defined(CYMLP_THREADS_OPENMP)
    CHECK(strcmp(b, "openmp") == 0, "backend %s", b);
#else
    CHECK(strcmp(b, "none") == 0, "backend %s", b);
#endif
}

/* cost of an empty job of 2 tasks, for the record */
static void report_overhead(void)
{
    static count_job j;
    const int reps = 20000;
    run_count(&j, 2, 0, NULL);
    const double t0 = now_s();
    for (int k = 0; k < reps; ++k) cymlp_parallel_for(2, count_task, &j);
    const double dt = now_s() - t0;
    printf("overhead: %.2f us per job of 2 empty tasks\n", 1e6 * dt / reps);
}

/* runs a test, naming it first (a hang then shows where) */
#define RUN(test)                                                                         \
    do {                                                                                  \
        const double t0_ = now_s();                                                       \
        printf("%-26s", #test);                                                           \
        fflush(stdout);                                                                   \
        test();                                                                           \
        printf(" %.2f s\n", now_s() - t0_);                                               \
        fflush(stdout);                                                                   \
    } while (0)

int main(void)
{
    printf("backend %s, default threads %d\n", cymlp_threads_backend(),
           cymlp_threads_default());
    fflush(stdout);
    RUN(test_backend_name);
    RUN(test_default_threads);
    RUN(test_each_t_once);
    report_overhead();
    RUN(test_concurrent_tasks);
#ifdef CYMLP_THREADS_POOL
    RUN(test_affinity);
#endif
    RUN(test_many_jobs);
    RUN(test_concurrent_callers);
    RUN(test_nested);
    RUN(test_fork);
    RUN(test_large_n); /* (leaves a pool of CYMLP_POOL_MAX workers) */
    RUN(test_many_jobs);
    RUN(test_shutdown_restart);
    printf("test_threads (%s): %d passed, %d failed\n", cymlp_threads_backend(), passed,
           failed);
    return failed != 0;
}
