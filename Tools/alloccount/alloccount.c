// LD_PRELOAD heap-call counter: prints how many malloc/calloc/realloc/posix_memalign/
// aligned_alloc calls the process made, at exit, to stderr. Used to show that training steps
// allocate nothing: run a benchmark with N and N+k steps and compare the counts.
//
//   gcc -O2 -shared -fPIC -o /tmp/alloccount.so Tools/alloccount/alloccount.c -ldl
//   LD_PRELOAD=/tmp/alloccount.so .build/release/swiftgpt bench train --config char-baby --steps 1 --json
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <execinfo.h>

static atomic_long calls;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

// dlsym may call calloc before real_calloc is known: serve it from a small static buffer.
static char bootstrap[4096];
static size_t bootstrap_used;

static void init(void) {
    if (real_malloc) return;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
}

// ALLOCCOUNT_TRACE=N prints the call stack of allocations N+1 .. N+8 (to find who allocates).
static __thread int in_trace;
static void maybe_trace(long index) {
    static long from = -2;
    if (from == -2) { const char *v = getenv("ALLOCCOUNT_TRACE"); from = v ? atol(v) : -1; }
    if (from < 0 || index < from || index >= from + 8 || in_trace) return;
    in_trace = 1;
    void *frames[24];
    int n = backtrace(frames, 24);
    write(2, "--- allocation\n", 15);
    backtrace_symbols_fd(frames, n, 2);
    in_trace = 0;
}

void *malloc(size_t n) { init(); maybe_trace(atomic_fetch_add(&calls, 1)); return real_malloc(n); }
void *calloc(size_t a, size_t b) {
    if (!real_calloc) {
        size_t n = (a * b + 15) & ~(size_t)15;
        if (bootstrap_used + n > sizeof bootstrap) return NULL;
        void *p = bootstrap + bootstrap_used;
        bootstrap_used += n;
        memset(p, 0, n);
        return p;
    }
    atomic_fetch_add(&calls, 1);
    return real_calloc(a, b);
}
void *realloc(void *p, size_t n) { init(); atomic_fetch_add(&calls, 1); return real_realloc(p, n); }
int posix_memalign(void **p, size_t a, size_t n) { init(); atomic_fetch_add(&calls, 1); return real_posix_memalign(p, a, n); }
void *aligned_alloc(size_t a, size_t n) { init(); atomic_fetch_add(&calls, 1); return real_aligned_alloc(a, n); }
void free(void *p) {
    static void (*real_free)(void *);
    if ((char *)p >= bootstrap && (char *)p < bootstrap + sizeof bootstrap) return;
    if (!real_free) real_free = dlsym(RTLD_NEXT, "free");
    real_free(p);
}

__attribute__((destructor)) static void report(void) {
    char line[96];
    int len = snprintf(line, sizeof line, "alloccount: %ld heap allocations\n", atomic_load(&calls));
    if (len > 0) write(2, line, (size_t)len);
}
