// The CUDA subset arraymel's kernels use, on the CPU (g++), for tests/cuda_cpu.
//
// Each CUDA thread of a block is a cooperative fiber (ucontext to start it, _setjmp/_longjmp to
// switch); the blocks of a grid run one after another. __syncthreads is a barrier among the
// block's fibers (a thread that has exited counts as arrived); __shfl_xor_sync exchanges values
// among the 32 lanes of a warp behind a warp barrier; atomics are trivially atomic (one OS thread).
// What CUDA leaves undefined and a GPU would silently get wrong is reported as an error of the
// launch: threads waiting at different __syncthreads, a shuffle whose mask names a lane that has
// exited (or does not exist), a deadlock, shared memory written outside its arrays.
//
// The builder (build.py) prepends this header to the kernel text, rewrites each `__shared__` array
// to a per-block array of this runtime, and appends one extern "C" entry per instantiation.
#pragma once
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <xmmintrin.h>

#include <algorithm>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned int x, y, z; };
typedef uint3 dim3;

namespace cuemu {

enum State { READY, AT_SYNC, AT_WARP, EXITED };

struct Thread {
    uint3 tid;
    int linear;
    State state;
    int site;            // __syncthreads: source line; shuffle: the mask
    jmp_buf ctx;
    ucontext_t boot;
    char* stack;
#ifdef CUEMU_ASAN
    void* fake_stack;
#endif
};

struct Warp {
    unsigned long long slot[2][32];
    unsigned gen;
};

struct SharedArray {  // a __shared__ array: guard, storage, guard (poisoned before every block)
    unsigned char* base;
    size_t size;
};

static const size_t GUARD = 16 << 10;  // bytes of guard on each side of a shared array
static const unsigned char POISON = 0xFF;  // NaN as float and double, the largest key as an integer
#ifdef CUEMU_ASAN
static const size_t STACK = 1 << 20;
#else
static const size_t STACK = 64 << 10;
#endif

struct Launch {  // what Python passes (ctypes mirror in build.py)
    unsigned int grid[3], block[3];
    unsigned long long smem;
    int shuffle;               // randomise thread order per round and block order
    int ftz;                   // flush float32 denormals (NVRTC -ftz=true)
    unsigned long long seed;
    const long long* blocks;   // linear block ids to run (scale mode), or null for all
    long long nblocks;
    char* error;               // message buffer
    unsigned long long error_len;
};

struct Runtime {
    uint3 bid, bdim, gdim;
    Thread* cur = nullptr;
    std::vector<Thread> threads;
    std::vector<Warp> warps;
    std::vector<unsigned char> dyn;  // dynamic shared memory with guards
    size_t dyn_size = 0;
    std::vector<SharedArray> shared;
    jmp_buf sched;     // the scheduler, while a fiber runs
    sigjmp_buf abort_jb;  // the launch, to abandon it on an error (also from the fault handler)
    void* fault_addr = nullptr;
    void (*job)(const void*) = nullptr;
    const void* payload = nullptr;
    std::string error;
    bool failed = false;
    bool fibers_valid = false;
#ifdef CUEMU_ASAN
    const void* main_bottom = nullptr;
    size_t main_size = 0;
    void* main_fake = nullptr;
    bool abort_from_fiber = false;
#endif
};

static Runtime g;

[[noreturn]] inline void fail(const std::string& msg);

// ------------------------------------------------------------------------------------- switching
inline void to_fiber(Thread& t) {
    g.cur = &t;
#ifdef CUEMU_ASAN
    __sanitizer_start_switch_fiber(&g.main_fake, t.stack, STACK);
#endif
    if (!_setjmp(g.sched)) _longjmp(t.ctx, 1);
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(g.main_fake, nullptr, nullptr);
#endif
    g.cur = nullptr;
}

inline void to_scheduler() {
    Thread& t = *g.cur;
#ifdef CUEMU_ASAN
    __sanitizer_start_switch_fiber(&t.fake_stack, g.main_bottom, g.main_size);
#endif
    if (!_setjmp(t.ctx)) _longjmp(g.sched, 1);
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(t.fake_stack, nullptr, nullptr);
#endif
}

static Thread* g_booting = nullptr;

extern "C" inline void cuemu_fiber_main() {
    Thread& t = *g_booting;
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g.main_bottom, &g.main_size);
    __sanitizer_start_switch_fiber(&t.fake_stack, g.main_bottom, g.main_size);
#endif
    // park here; the scheduler jumps in whenever this thread has work
    if (!_setjmp(t.ctx)) setcontext(&t.boot);
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(t.fake_stack, nullptr, nullptr);
#endif
    for (;;) {
        g.job(g.payload);
        g.cur->state = EXITED;
        to_scheduler();
    }
}

inline void boot_fibers(size_t n) {
    if (g.fibers_valid && g.threads.size() >= n) return;
    if (g.threads.size() < n) {
        size_t old = g.threads.size();
        g.threads.resize(n);
        for (size_t i = old; i < n; ++i) g.threads[i].stack = static_cast<char*>(malloc(STACK));
    }
    for (auto& t : g.threads) {
        ucontext_t uc;
        getcontext(&uc);
        uc.uc_stack.ss_sp = t.stack;
        uc.uc_stack.ss_size = STACK;
        uc.uc_link = nullptr;
        makecontext(&uc, cuemu_fiber_main, 0);
        g_booting = &t;
#ifdef CUEMU_ASAN
        void* fake = nullptr;
        __sanitizer_start_switch_fiber(&fake, t.stack, STACK);
#endif
        swapcontext(&t.boot, &uc);
#ifdef CUEMU_ASAN
        __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    }
    g.fibers_valid = true;
}

[[noreturn]] inline void fail(const std::string& msg) {
    if (!g.failed) {
        char where[160];
        snprintf(where, sizeof where, " (block (%u, %u, %u)", g.bid.x, g.bid.y, g.bid.z);
        g.error = msg + where + (g.cur ? ", thread " + std::to_string(g.cur->tid.x) + ")" : std::string(")"));
    }
    g.failed = true;
    g.fibers_valid = false;  // abandon every fiber mid-kernel; they are booted afresh next launch
#ifdef CUEMU_ASAN
    g.abort_from_fiber = g.cur != nullptr;
    if (g.cur) __sanitizer_start_switch_fiber(nullptr, g.main_bottom, g.main_size);
#endif
    siglongjmp(g.abort_jb, 2);
}

// ------------------------------------------------------------------------------------- shared memory
inline void poison(const SharedArray& a) { memset(a.base + GUARD, POISON, a.size); }

inline bool guards_intact(const unsigned char* base, size_t size) {
    static unsigned char ref[GUARD];
    static bool init = (memset(ref, POISON, GUARD), true);
    (void)init;
    return !memcmp(base, ref, GUARD) && !memcmp(base + GUARD + size, ref, GUARD);
}

template <typename A, int ID>
A& block_shared() {
    static unsigned char* storage = [] {
        SharedArray a{static_cast<unsigned char*>(aligned_alloc(64, (sizeof(A) + 2 * GUARD + 63) / 64 * 64)),
                      sizeof(A)};
        memset(a.base, POISON, a.size + 2 * GUARD);
        g.shared.push_back(a);
        return a.base;
    }();
    return *reinterpret_cast<A*>(storage + GUARD);
}

inline unsigned char* dynamic_smem() { return g.dyn.data() + GUARD; }

// ------------------------------------------------------------------------------------- one block
inline void run_block(std::mt19937_64* rng) {
    const int n = int(g.bdim.x * g.bdim.y * g.bdim.z);
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) {
        Thread& t = g.threads[i];
        t.linear = i;
        t.tid = uint3{unsigned(i) % g.bdim.x, (unsigned(i) / g.bdim.x) % g.bdim.y, unsigned(i) / (g.bdim.x * g.bdim.y)};
        t.state = READY;
        order[i] = i;
    }
    for (auto& w : g.warps) w.gen = 0;
    int live = n;
    for (;;) {
        if (rng) std::shuffle(order.begin(), order.end(), *rng);
        for (int i : order) {
            if (g.threads[i].state == READY) to_fiber(g.threads[i]);
        }
        live = 0;
        int at_sync = 0, at_warp = 0, site = -1;
        bool same_site = true;
        for (int i = 0; i < n; ++i) {
            const Thread& t = g.threads[i];
            if (t.state == EXITED) continue;
            ++live;
            if (t.state == AT_SYNC) {
                ++at_sync;
                if (site >= 0 && t.site != site) same_site = false;
                site = t.site;
            } else if (t.state == AT_WARP) {
                ++at_warp;
            }
        }
        if (live == 0) return;
        bool released = false;
        for (int w0 = 0; w0 < n; w0 += 32) {  // warps whose lanes all wait at a shuffle
            int waiting = 0;
            unsigned mask = 0;
            for (int i = w0; i < std::min(n, w0 + 32); ++i)
                if (g.threads[i].state == AT_WARP) {
                    ++waiting;
                    mask = unsigned(g.threads[i].site);
                }
            if (!waiting) continue;
            for (int l = 0; l < 32; ++l) {
                if (!(mask >> l & 1u)) continue;
                const int i = w0 + l;
                if (i >= n) { g.cur = nullptr; fail("__shfl_xor_sync: mask names lane " + std::to_string(l) + " of warp " + std::to_string(w0 / 32) + ", beyond blockDim"); }
                const Thread& t = g.threads[i];
                if (t.state == EXITED) { g.cur = nullptr; fail("__shfl_xor_sync: lane " + std::to_string(l) + " of warp " + std::to_string(w0 / 32) + " has exited (a shuffle with missing lanes)"); }
                if (t.state == AT_WARP && unsigned(t.site) != mask) { g.cur = nullptr; fail("__shfl_xor_sync: lanes of one warp pass different masks"); }
            }
            bool all = true;
            for (int l = 0; l < 32; ++l)
                if ((mask >> l & 1u) && g.threads[w0 + l].state != AT_WARP) all = false;
            if (all) {
                for (int l = 0; l < 32; ++l)
                    if (mask >> l & 1u) g.threads[w0 + l].state = READY;
                g.warps[w0 / 32].gen++;
                released = true;
            }
        }
        if (released) continue;
        if (at_sync == live) {
            if (!same_site) { g.cur = nullptr; fail("divergent __syncthreads: threads of one block wait at different barriers"); }
            for (int i = 0; i < n; ++i)
                if (g.threads[i].state == AT_SYNC) g.threads[i].state = READY;
            continue;
        }
        g.cur = nullptr;
        fail("deadlock: " + std::to_string(at_sync) + " threads at __syncthreads, " + std::to_string(at_warp) +
             " at a shuffle whose warp cannot complete");
    }
}

// A memory fault inside a kernel (an access far outside every buffer) ends the launch with an error
// instead of the process. Not under ASan, which reports faults itself.
inline void on_fault(int, siginfo_t* si, void*) {
    g.fault_addr = si->si_addr;
    char msg[200];
    snprintf(msg, sizeof msg, "out of bounds: memory fault at address 0x%llx",
             (unsigned long long)(uintptr_t)si->si_addr);  // 0x0: a non-canonical address
    if (!g.failed) {
        char where[160];
        snprintf(where, sizeof where, " (block (%u, %u, %u)%s", g.bid.x, g.bid.y, g.bid.z, g.cur ? "" : ")");
        g.error = std::string(msg) + where + (g.cur ? ", thread " + std::to_string(g.cur->tid.x) + ")" : std::string());
    }
    g.failed = true;
    g.fibers_valid = false;
    siglongjmp(g.abort_jb, 3);
}

inline int launch(const Launch* L, void (*job)(const void*), const void* payload) {
    g.failed = false;
    g.error.clear();
    g.gdim = uint3{L->grid[0], L->grid[1], L->grid[2]};
    g.bdim = uint3{L->block[0], L->block[1], L->block[2]};
    const unsigned long long nthreads = 1ull * g.bdim.x * g.bdim.y * g.bdim.z;
    auto report = [&](const std::string& m) {
        snprintf(L->error, L->error_len, "%s", m.c_str());
        return 1;
    };
    if (nthreads == 0 || nthreads > 1024 || g.bdim.z > 64) return report("block dimensions outside CUDA's limits");
    if (L->grid[0] == 0 || L->grid[1] == 0 || L->grid[2] == 0 || L->grid[0] > 2147483647u || L->grid[1] > 65535u ||
        L->grid[2] > 65535u)
        return report("grid dimensions outside CUDA's limits (x < 2^31, y and z <= 65535)");
    boot_fibers(size_t(nthreads));
    g.warps.assign((nthreads + 31) / 32, Warp{});
    g.dyn_size = size_t(L->smem);
    g.dyn.assign(g.dyn_size + 2 * GUARD, POISON);
    for (auto& a : g.shared) memset(a.base, POISON, a.size + 2 * GUARD);  // guards a failed launch broke
    g.job = job;
    g.payload = payload;
    const unsigned int csr = _mm_getcsr();
    if (L->ftz) _mm_setcsr(csr | 0x8040);  // FTZ and DAZ
    std::mt19937_64 rng(L->seed);
    const long long total = 1ll * L->grid[0] * L->grid[1] * L->grid[2];
    std::vector<long long> ids;
    if (L->blocks) ids.assign(L->blocks, L->blocks + L->nblocks);
    else if (L->shuffle) {
        ids.resize(size_t(total));
        for (long long i = 0; i < total; ++i) ids[size_t(i)] = i;
        std::shuffle(ids.begin(), ids.end(), rng);
    }
    const long long count = (L->blocks || L->shuffle) ? (long long)ids.size() : total;
    int rc = 0;
#ifndef CUEMU_ASAN
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
#endif
    if (sigsetjmp(g.abort_jb, 1) == 0) {
        for (long long k = 0; k < count; ++k) {
            const long long b = (L->blocks || L->shuffle) ? ids[size_t(k)] : k;
            if (b < 0 || b >= total) fail("block id outside the grid");
            g.bid = uint3{unsigned(b % L->grid[0]), unsigned((b / L->grid[0]) % L->grid[1]),
                          unsigned(b / (1ll * L->grid[0] * L->grid[1]))};
            memset(g.dyn.data() + GUARD, POISON, g.dyn_size);
            for (auto& a : g.shared) poison(a);
            run_block(L->shuffle ? &rng : nullptr);
            if (!guards_intact(g.dyn.data(), g.dyn_size)) fail("dynamic shared memory written outside its size");
            for (auto& a : g.shared)
                if (!guards_intact(a.base, a.size)) fail("a __shared__ array written outside its bounds");
        }
    } else {
#ifdef CUEMU_ASAN
        if (g.abort_from_fiber) __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
        g.cur = nullptr;
        rc = 1;  // fail() jumped here from a fiber or the scheduler
    }
#ifndef CUEMU_ASAN
    sigaction(SIGSEGV, &old_segv, nullptr);
    sigaction(SIGBUS, &old_bus, nullptr);
#endif
    _mm_setcsr(csr);
    if (rc) report(g.error);
    return rc;
}

// ------------------------------------------------------------------------------------- entry points
template <typename... A, size_t... I>
inline void call_with(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
struct Job {
    void (*f)(A...);
    void** args;
    static void run(const void* p) {
        const Job* j = static_cast<const Job*>(p);
        call_with(j->f, j->args, std::index_sequence_for<A...>{});
    }
};

template <typename... A>
int launch_kernel(void (*f)(A...), const Launch* L, void** args) {
    Job<A...> job{f, args};
    return launch(L, &Job<A...>::run, &job);
}

// Type codes of the parameters, for the Python side's check of the packed arguments.
template <typename T> struct code { static std::string s() { return "?"; } };
template <> struct code<float> { static std::string s() { return "f"; } };
template <> struct code<double> { static std::string s() { return "d"; } };
template <> struct code<signed char> { static std::string s() { return "b"; } };
template <> struct code<char> { static std::string s() { return "b"; } };
template <> struct code<unsigned char> { static std::string s() { return "B"; } };
template <> struct code<short> { static std::string s() { return "h"; } };
template <> struct code<unsigned short> { static std::string s() { return "H"; } };
template <> struct code<int> { static std::string s() { return "i"; } };
template <> struct code<unsigned int> { static std::string s() { return "I"; } };
template <> struct code<long> { static std::string s() { return "q"; } };
template <> struct code<unsigned long> { static std::string s() { return "Q"; } };
template <> struct code<long long> { static std::string s() { return "q"; } };
template <> struct code<unsigned long long> { static std::string s() { return "Q"; } };
template <typename T> struct code<T*> { static std::string s() { return "P" + code<std::remove_cv_t<T>>::s(); } };

template <typename... A>
const char* signature(void (*)(A...)) {
    static const std::string s = (std::string() + ... + (code<std::remove_cv_t<A>>::s() + ","));
    return s.c_str();
}

}  // namespace cuemu

// ------------------------------------------------------------------------------------- built-ins
#define threadIdx (cuemu::g.cur->tid)
#define blockIdx (cuemu::g.bid)
#define blockDim (cuemu::g.bdim)
#define gridDim (cuemu::g.gdim)
#define __syncthreads() cuemu_syncthreads(__LINE__)

inline void cuemu_syncthreads(int line) {
    cuemu::g.cur->state = cuemu::AT_SYNC;
    cuemu::g.cur->site = line;
    cuemu::to_scheduler();
}

template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
    if (width != 32) cuemu::fail("__shfl_xor_sync: width other than 32 is not emulated");
    cuemu::Thread& t = *cuemu::g.cur;
    const int lane = t.linear & 31;
    cuemu::Warp& w = cuemu::g.warps[size_t(t.linear >> 5)];
    const unsigned buf = w.gen & 1u;
    memcpy(&w.slot[buf][lane], &v, sizeof(T));
    if (!(mask >> lane & 1u)) cuemu::fail("__shfl_xor_sync: the calling lane is not in the mask");
    t.state = cuemu::AT_WARP;
    t.site = int(mask);
    cuemu::to_scheduler();
    const int src = lane ^ lane_mask;
    if (src < 32 && !(mask >> src & 1u)) cuemu::fail("__shfl_xor_sync: source lane not in the mask");
    T r;
    memcpy(&r, &w.slot[buf][src < 32 ? src : lane], sizeof(T));
    return r;
}

template <typename T> inline T atomicMax(T* p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <typename T> inline T atomicMin(T* p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <typename T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <typename T> inline T atomicExch(T* p, T v) { T o = *p; *p = v; return o; }
template <typename T> inline T atomicCAS(T* p, T c, T v) { T o = *p; if (o == c) *p = v; return o; }

inline unsigned int __float_as_uint(float v) { unsigned int r; memcpy(&r, &v, 4); return r; }
inline int __float_as_int(float v) { int r; memcpy(&r, &v, 4); return r; }
inline float __uint_as_float(unsigned int v) { float r; memcpy(&r, &v, 4); return r; }
inline float __int_as_float(int v) { float r; memcpy(&r, &v, 4); return r; }
inline long long __double_as_longlong(double v) { long long r; memcpy(&r, &v, 8); return r; }
inline double __longlong_as_double(long long v) { double r; memcpy(&r, &v, 8); return r; }
[[noreturn]] inline void __trap() { cuemu::fail("__trap()"); }
