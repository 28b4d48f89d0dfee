// cuda_emu.cpp — a CPU emulator of the part of the CUDA driver API, NVRTC and cuBLAS that
// SwiftGPT's CUDABackend uses, built as one shared library (libcudaemu.so) that exports the same
// C symbols. Point the Swift loader at it with SWIFTGPT_CUDA_EMULATOR=/path/libcudaemu.so and the
// whole backend runs, and is tested, on a machine without a GPU.
//
// - Device memory (cuMemAlloc) is mmap'd and kept PROT_NONE except while an emulator call runs, so
//   a host dereference of a device pointer crashes at once instead of silently working.
// - nvrtcCompileProgram compiles the CUDA source as C++17 (clang++ -include cuda_emu.h) into a shared
//   library; the "PTX" is that library's path. cuModuleLoadData dlopens it and cuModuleGetFunction
//   finds the sgemu_launch_<kernel> wrapper that SG_EXPORT generated.
// - cuLaunchKernel runs the blocks one after another; the threads of a block are fibers (ucontext),
//   so __syncthreads and warp shuffles are real barriers with any number of threads, deterministic,
//   and cheap on a 2-core machine. Blocks never run concurrently: atomics cannot race here.
// - cublasSgemm_v2 is a straightforward column-major loop (double accumulators).
//
// Everything runs synchronously; streams are accepted and ignored.

#include <dlfcn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#define EXPORT extern "C" __attribute__((visibility("default")))

#ifndef SGEMU_DEFAULT_CXX
#define SGEMU_DEFAULT_CXX "clang++"
#endif

typedef int CUresult;
typedef unsigned long long CUdeviceptr;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701,
    CUDA_ERROR_LAUNCH_FAILED = 719,
};

static void warn(const char* format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "cuda_emu: ");
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
}

// ---------------------------------------------------------------------------------------------
// Device memory

static std::recursive_mutex gLock;                  // one emulator call at a time
static std::map<unsigned long long, size_t> gAllocations;  // address -> mapped bytes
static int gUnlockDepth = 0;

static void protectAll(int protection) {
    for (auto& a : gAllocations) mprotect(reinterpret_cast<void*>(a.first), a.second, protection);
}

/// Holds the emulator lock and makes device memory readable and writable for its lifetime.
struct DeviceAccess {
    std::lock_guard<std::recursive_mutex> guard{gLock};
    DeviceAccess() {
        if (gUnlockDepth++ == 0) protectAll(PROT_READ | PROT_WRITE);
    }
    ~DeviceAccess() {
        if (--gUnlockDepth == 0) protectAll(PROT_NONE);
    }
};

static size_t pageRounded(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

// ---------------------------------------------------------------------------------------------
// Driver: device, context, stream

static const char* errorName(CUresult code) {
    switch (code) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case CUDA_ERROR_INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
    case CUDA_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case CUDA_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case CUDA_ERROR_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
    default: return nullptr;
    }
}

EXPORT CUresult cuGetErrorName(CUresult code, const char** name) {
    const char* n = errorName(code);
    if (!n) return CUDA_ERROR_INVALID_VALUE;
    *name = n;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuGetErrorString(CUresult code, const char** text) {
    switch (code) {
    case CUDA_SUCCESS: *text = "no error"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_VALUE: *text = "invalid argument"; return CUDA_SUCCESS;
    case CUDA_ERROR_OUT_OF_MEMORY: *text = "out of memory"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_INITIALIZED: *text = "initialization error"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_DEVICE: *text = "invalid device ordinal"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_IMAGE: *text = "device kernel image is invalid"; return CUDA_SUCCESS;
    case CUDA_ERROR_INVALID_HANDLE: *text = "invalid resource handle"; return CUDA_SUCCESS;
    case CUDA_ERROR_NOT_FOUND: *text = "named symbol not found"; return CUDA_SUCCESS;
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: *text = "too many resources requested for launch"; return CUDA_SUCCESS;
    case CUDA_ERROR_LAUNCH_FAILED: *text = "unspecified launch failure (see the emulator's message on stderr)"; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

static bool gInitialised = false;

EXPORT CUresult cuInit(unsigned flags) {
    (void)flags;
    gInitialised = true;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDriverGetVersion(int* version) {
    *version = 13000;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetCount(int* count) {
    if (!gInitialised) return CUDA_ERROR_NOT_INITIALIZED;
    *count = 1;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGet(int* device, int ordinal) {
    if (!gInitialised) return CUDA_ERROR_NOT_INITIALIZED;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetName(char* name, int length, int device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)length, "SwiftGPT CUDA emulator (CPU)");
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceGetAttribute(int* value, int attribute, int device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    switch (attribute) {
    case 1: *value = 1024; break;          // max threads per block
    case 8: *value = 48 * 1024; break;     // max shared memory per block
    case 10: *value = 32; break;           // warp size
    case 16: *value = 132; break;          // multiprocessors
    case 75: *value = 9; break;            // compute capability major
    case 76: *value = 0; break;            // compute capability minor
    case 97: *value = 227 * 1024; break;   // max shared memory per block, opt-in
    default: *value = 0; break;
    }
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDeviceTotalMem_v2(size_t* bytes, int device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

static int gContext = 1;  // the one context's handle points here

EXPORT CUresult cuDevicePrimaryCtxRetain(void** context, int device) {
    if (device != 0) return CUDA_ERROR_INVALID_DEVICE;
    *context = &gContext;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int device) { return device == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }
EXPORT CUresult cuCtxSetCurrent(void* context) { return context == &gContext || !context ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE; }
EXPORT CUresult cuCtxSynchronize() { return CUDA_SUCCESS; }

static int gStream = 2;

EXPORT CUresult cuStreamCreate(void** stream, unsigned flags) {
    (void)flags;
    *stream = &gStream;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuStreamSynchronize(void* stream) { (void)stream; return CUDA_SUCCESS; }
EXPORT CUresult cuStreamDestroy_v2(void* stream) { (void)stream; return CUDA_SUCCESS; }

// ---------------------------------------------------------------------------------------------
// Driver: memory

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* pointer, size_t bytes) {
    std::lock_guard<std::recursive_mutex> guard(gLock);
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    size_t mapped = pageRounded(bytes);
    int protection = gUnlockDepth > 0 ? PROT_READ | PROT_WRITE : PROT_NONE;
    void* p = mmap(nullptr, mapped, protection, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
    gAllocations[reinterpret_cast<unsigned long long>(p)] = mapped;
    *pointer = reinterpret_cast<unsigned long long>(p);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr pointer) {
    std::lock_guard<std::recursive_mutex> guard(gLock);
    auto it = gAllocations.find(pointer);
    if (it == gAllocations.end()) {
        warn("cuMemFree_v2 of %#llx, which cuMemAlloc_v2 did not return", pointer);
        return CUDA_ERROR_INVALID_VALUE;
    }
    munmap(reinterpret_cast<void*>(it->first), it->second);
    gAllocations.erase(it);
    return CUDA_SUCCESS;
}

/// Whether [pointer, pointer + bytes) lies inside one allocation.
static bool isDeviceRange(CUdeviceptr pointer, size_t bytes) {
    auto it = gAllocations.upper_bound(pointer);
    if (it == gAllocations.begin()) return false;
    --it;
    return pointer >= it->first && pointer + bytes <= it->first + it->second;
}

static CUresult checkRange(const char* call, CUdeviceptr pointer, size_t bytes) {
    if (bytes == 0 || isDeviceRange(pointer, bytes)) return CUDA_SUCCESS;
    warn("%s: [%#llx, +%zu bytes) is not device memory", call, pointer, bytes);
    return CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr destination, const void* source, size_t bytes) {
    DeviceAccess access;
    if (CUresult r = checkRange("cuMemcpyHtoD_v2", destination, bytes)) return r;
    memcpy(reinterpret_cast<void*>(destination), source, bytes);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoH_v2(void* destination, CUdeviceptr source, size_t bytes) {
    DeviceAccess access;
    if (CUresult r = checkRange("cuMemcpyDtoH_v2", source, bytes)) return r;
    memcpy(destination, reinterpret_cast<const void*>(source), bytes);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr destination, CUdeviceptr source, size_t bytes, void* stream) {
    (void)stream;
    DeviceAccess access;
    if (CUresult r = checkRange("cuMemcpyDtoDAsync_v2", destination, bytes)) return r;
    if (CUresult r = checkRange("cuMemcpyDtoDAsync_v2", source, bytes)) return r;
    memmove(reinterpret_cast<void*>(destination), reinterpret_cast<const void*>(source), bytes);
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD32Async(CUdeviceptr destination, unsigned value, size_t count, void* stream) {
    (void)stream;
    DeviceAccess access;
    if (CUresult r = checkRange("cuMemsetD32Async", destination, count * 4)) return r;
    unsigned* p = reinterpret_cast<unsigned*>(destination);
    for (size_t i = 0; i < count; i++) p[i] = value;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuMemsetD8Async(CUdeviceptr destination, unsigned char value, size_t count, void* stream) {
    (void)stream;
    DeviceAccess access;
    if (CUresult r = checkRange("cuMemsetD8Async", destination, count)) return r;
    memset(reinterpret_cast<void*>(destination), value, count);
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Fibers: the threads of one block

namespace {

enum FiberState { Runnable, AtBlockBarrier, AtWarpBarrier, Finished };

struct Module {
    void* handle = nullptr;
    void (*setIndices)(const unsigned*) = nullptr;
};

struct Function {
    Module* module;
    void (*launcher)(void**);
    std::string name;
};

struct Fiber {
    ucontext_t context;
    FiberState state;
};

/// Per OS thread: the block being run and its fibers' stacks (reused across launches).
struct BlockRun {
    std::vector<Fiber> fibers;
    std::vector<char*> stacks;
    std::vector<unsigned long long> exchange;
    std::vector<char> dynamicShared;
    ucontext_t scheduler;
    int current = 0;
    const Function* function = nullptr;
    void** params = nullptr;
    bool failed = false;
};

const size_t fiberStackBytes = 256 * 1024;
thread_local BlockRun* tlsRun = nullptr;

void suspend(FiberState state) {
    BlockRun* run = tlsRun;
    Fiber& fiber = run->fibers[run->current];
    fiber.state = state;
    swapcontext(&fiber.context, &run->scheduler);
}

void hookBarrier(int warpOnly) { suspend(warpOnly ? AtWarpBarrier : AtBlockBarrier); }

unsigned long long hookExchange(unsigned long long bits, int sourceLane) {
    BlockRun* run = tlsRun;
    int me = run->current, base = me & ~31;
    run->exchange[(size_t)me] = bits;
    suspend(AtWarpBarrier);
    int source = base + (sourceLane & 31);
    unsigned long long result = source < (int)run->fibers.size() ? run->exchange[(size_t)source] : bits;
    suspend(AtWarpBarrier);  // nobody overwrites a slot before every lane has read
    return result;
}

void* hookDynamicShared() { return tlsRun->dynamicShared.data(); }

void fiberEntry() {
    BlockRun* run = tlsRun;
    run->function->launcher(run->params);
    run->fibers[run->current].state = Finished;
    // returning resumes uc_link: the scheduler
}

/// Runs one block to completion. Returns false on a deadlock (threads waiting at barriers that can
/// never all be reached).
bool runBlock(BlockRun& run, const unsigned block[3], const unsigned blockDim[3], const unsigned gridDim[3]) {
    int count = (int)run.fibers.size();
    for (int t = 0; t < count; t++) {
        Fiber& f = run.fibers[(size_t)t];
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = run.stacks[(size_t)t];
        f.context.uc_stack.ss_size = fiberStackBytes;
        f.context.uc_link = &run.scheduler;
        makecontext(&f.context, fiberEntry, 0);
        f.state = Runnable;
    }
    unsigned indices[12] = {0, 0, 0, block[0], block[1], block[2], blockDim[0], blockDim[1], blockDim[2],
                            gridDim[0], gridDim[1], gridDim[2]};
    for (;;) {
        for (int t = 0; t < count; t++) {
            if (run.fibers[(size_t)t].state != Runnable) continue;
            indices[0] = (unsigned)t % blockDim[0];
            indices[1] = ((unsigned)t / blockDim[0]) % blockDim[1];
            indices[2] = (unsigned)t / (blockDim[0] * blockDim[1]);
            run.function->module->setIndices(indices);
            run.current = t;
            swapcontext(&run.scheduler, &run.fibers[(size_t)t].context);
        }
        int alive = 0, atBlock = 0;
        for (auto& f : run.fibers) {
            if (f.state != Finished) alive++;
            if (f.state == AtBlockBarrier) atBlock++;
        }
        if (alive == 0) return true;
        if (atBlock == alive) {
            for (auto& f : run.fibers) if (f.state == AtBlockBarrier) f.state = Runnable;
            continue;
        }
        bool released = false;
        for (int w = 0; w * 32 < count; w++) {
            int lo = w * 32, hi = std::min(count, lo + 32), waiting = 0, living = 0;
            for (int t = lo; t < hi; t++) {
                FiberState s = run.fibers[(size_t)t].state;
                if (s != Finished) living++;
                if (s == AtWarpBarrier) waiting++;
            }
            if (living > 0 && waiting == living) {
                for (int t = lo; t < hi; t++) run.fibers[(size_t)t].state = Runnable;
                released = true;
            }
        }
        if (!released) {
            warn("kernel %s deadlocked in block (%u,%u,%u): %d threads alive, %d at __syncthreads, the rest at a "
                 "warp barrier of a partly exited or diverged warp",
                 run.function->name.c_str(), block[0], block[1], block[2], alive, atBlock);
            return false;
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Driver: modules and launches

static const char* modulePrefix = "SGEMU-MODULE ";

EXPORT CUresult cuModuleLoadData(void** module, const void* image) {
    std::lock_guard<std::recursive_mutex> guard(gLock);
    const char* text = static_cast<const char*>(image);
    size_t prefix = strlen(modulePrefix);
    if (strncmp(text, modulePrefix, prefix) != 0) {
        warn("cuModuleLoadData: the image is not an emulator module (real PTX cannot run on the CPU)");
        return CUDA_ERROR_INVALID_IMAGE;
    }
    std::string path(text + prefix);
    while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        warn("cuModuleLoadData: %s", dlerror());
        return CUDA_ERROR_INVALID_IMAGE;
    }
    auto* barrier = static_cast<void (**)(int)>(dlsym(handle, "sgemu_hook_barrier"));
    auto* exchange = static_cast<unsigned long long (**)(unsigned long long, int)>(dlsym(handle, "sgemu_hook_exchange"));
    auto* shared = static_cast<void* (**)()>(dlsym(handle, "sgemu_hook_dynamic_shared"));
    auto setIndices = reinterpret_cast<void (*)(const unsigned*)>(dlsym(handle, "sgemu_set_indices"));
    if (!barrier || !exchange || !shared || !setIndices) {
        warn("cuModuleLoadData: %s was not built with cuda_emu.h", path.c_str());
        dlclose(handle);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *barrier = hookBarrier;
    *exchange = hookExchange;
    *shared = hookDynamicShared;
    Module* m = new Module;
    m->handle = handle;
    m->setIndices = setIndices;
    *module = m;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleUnload(void* module) {
    std::lock_guard<std::recursive_mutex> guard(gLock);
    Module* m = static_cast<Module*>(module);
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    dlclose(m->handle);
    delete m;
    return CUDA_SUCCESS;
}

EXPORT CUresult cuModuleGetFunction(void** function, void* module, const char* name) {
    std::lock_guard<std::recursive_mutex> guard(gLock);
    Module* m = static_cast<Module*>(module);
    if (!m) return CUDA_ERROR_INVALID_HANDLE;
    std::string symbol = std::string("sgemu_launch_") + name;
    auto launcher = reinterpret_cast<void (*)(void**)>(dlsym(m->handle, symbol.c_str()));
    if (!launcher) return CUDA_ERROR_NOT_FOUND;
    *function = new Function{m, launcher, name};
    return CUDA_SUCCESS;
}

EXPORT CUresult cuFuncSetAttribute(void* function, int attribute, int value) {
    (void)attribute;
    (void)value;
    return function ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

EXPORT CUresult cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned sharedBytes, void* stream, void** params, void** extra) {
    (void)stream;
    const Function* f = static_cast<const Function*>(function);
    if (!f) return CUDA_ERROR_INVALID_HANDLE;
    if (extra) {
        warn("cuLaunchKernel: 'extra' parameters are not supported");
        return CUDA_ERROR_INVALID_VALUE;
    }
    unsigned long long threads = (unsigned long long)bx * by * bz;
    if (gx == 0 || gy == 0 || gz == 0 || threads == 0 || gy > 65535 || gz > 65535) {
        warn("cuLaunchKernel %s: invalid grid (%u,%u,%u) or block (%u,%u,%u)", f->name.c_str(), gx, gy, gz, bx, by, bz);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (threads > 1024 || sharedBytes > 227 * 1024) {
        warn("cuLaunchKernel %s: %llu threads, %u bytes of dynamic shared memory", f->name.c_str(), threads, sharedBytes);
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    DeviceAccess access;
    thread_local BlockRun run;
    run.fibers.resize(threads);
    run.exchange.assign(threads, 0);
    while (run.stacks.size() < threads) {
        void* stack = mmap(nullptr, fiberStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (stack == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
        run.stacks.push_back(static_cast<char*>(stack));
    }
    run.function = f;
    run.params = params;
    BlockRun* saved = tlsRun;
    tlsRun = &run;
    unsigned blockDim[3] = {bx, by, bz}, gridDim[3] = {gx, gy, gz};
    bool ok = true;
    for (unsigned z = 0; z < gz && ok; z++) {
        for (unsigned y = 0; y < gy && ok; y++) {
            for (unsigned x = 0; x < gx && ok; x++) {
                // Uninitialised shared memory reads as NaN, so a kernel that relies on zeroes shows it.
                run.dynamicShared.assign((size_t)sharedBytes + 16, (char)0xff);
                unsigned block[3] = {x, y, z};
                ok = runBlock(run, block, blockDim, gridDim);
            }
        }
    }
    tlsRun = saved;
    return ok ? CUDA_SUCCESS : CUDA_ERROR_LAUNCH_FAILED;
}

// ---------------------------------------------------------------------------------------------
// NVRTC

typedef int nvrtcResult;
enum { NVRTC_SUCCESS = 0, NVRTC_ERROR_INVALID_INPUT = 3, NVRTC_ERROR_INVALID_PROGRAM = 4, NVRTC_ERROR_COMPILATION = 6 };

struct Program {
    std::string source, name, log, ptx;
};

EXPORT const char* nvrtcGetErrorString(nvrtcResult result) {
    switch (result) {
    case NVRTC_SUCCESS: return "NVRTC_SUCCESS";
    case NVRTC_ERROR_INVALID_INPUT: return "NVRTC_ERROR_INVALID_INPUT";
    case NVRTC_ERROR_INVALID_PROGRAM: return "NVRTC_ERROR_INVALID_PROGRAM";
    case NVRTC_ERROR_COMPILATION: return "NVRTC_ERROR_COMPILATION";
    default: return "NVRTC_ERROR (emulator)";
    }
}

EXPORT nvrtcResult nvrtcVersion(int* major, int* minor) {
    *major = 13;
    *minor = 0;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcCreateProgram(void** program, const char* source, const char* name, int headers,
                                      const char* const* headerSources, const char* const* includeNames) {
    (void)headerSources;
    (void)includeNames;
    if (!program || !source || headers != 0) return NVRTC_ERROR_INVALID_INPUT;
    *program = new Program{source, name ? name : "program.cu", "", ""};
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcDestroyProgram(void** program) {
    if (!program || !*program) return NVRTC_ERROR_INVALID_PROGRAM;
    delete static_cast<Program*>(*program);
    *program = nullptr;
    return NVRTC_SUCCESS;
}

static std::string readFile(const std::string& path) {
    std::string text;
    if (FILE* f = fopen(path.c_str(), "rb")) {
        char buffer[65536];
        size_t n;
        while ((n = fread(buffer, 1, sizeof buffer, f)) > 0) text.append(buffer, n);
        fclose(f);
    }
    return text;
}

static unsigned long long fnv1a(const std::string& text, unsigned long long hash = 0xcbf29ce484222325ull) {
    for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ull;
    return hash;
}

/// The directory this library was loaded from (where build.sh puts cuda_emu.h).
static std::string libraryDirectory() {
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(&libraryDirectory), &info) && info.dli_fname) {
        std::string path(info.dli_fname);
        size_t slash = path.rfind('/');
        if (slash != std::string::npos) return path.substr(0, slash);
    }
    return ".";
}

static std::string quoted(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

EXPORT nvrtcResult nvrtcCompileProgram(void* program, int optionCount, const char* const* options) {
    Program* p = static_cast<Program*>(program);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    std::string defines;
    for (int i = 0; i < optionCount; i++) {
        // Macro definitions matter to the source; architecture and other flags do not here.
        if (strncmp(options[i], "-D", 2) == 0) defines += " " + quoted(options[i]);
    }
    const char* headerOverride = getenv("SGEMU_HEADER");
    std::string header = headerOverride ? headerOverride : libraryDirectory() + "/cuda_emu.h";
    std::string headerText = readFile(header);
    if (headerText.empty()) {
        p->log = "cuda_emu: cannot read the emulator header " + header + " (build.sh copies it next to libcudaemu.so)";
        return NVRTC_ERROR_COMPILATION;
    }
    const char* cxxOverride = getenv("SGEMU_CXX");
    std::string compiler = cxxOverride ? cxxOverride : SGEMU_DEFAULT_CXX;
    std::string flags = "-std=c++17 -O1 -shared -fPIC -w" + defines;
    unsigned long long key = fnv1a(p->source, fnv1a(headerText, fnv1a(compiler + flags)));
    const char* cacheOverride = getenv("SGEMU_CACHE_DIR");
    const char* tmp = getenv("TMPDIR");
    std::string dir = cacheOverride ? cacheOverride
                                    : std::string(tmp ? tmp : "/tmp") + "/sgemu-cache-" + std::to_string(getuid());
    mkdir(dir.c_str(), 0700);
    char name[32];
    snprintf(name, sizeof name, "%016llx", key);
    std::string library = dir + "/" + name + ".so";
    struct stat st;
    if (stat(library.c_str(), &st) != 0) {
        std::string sourcePath = dir + "/" + name + "." + std::to_string(getpid()) + ".cu";
        std::string partial = library + "." + std::to_string(getpid()) + ".tmp";
        if (FILE* f = fopen(sourcePath.c_str(), "wb")) {
            fwrite(p->source.data(), 1, p->source.size(), f);
            fclose(f);
        } else {
            p->log = "cuda_emu: cannot write " + sourcePath;
            return NVRTC_ERROR_COMPILATION;
        }
        std::string command = quoted(compiler) + " " + flags + " -include " + quoted(header) + " -x c++ " +
                              quoted(sourcePath) + " -o " + quoted(partial) + " 2>&1";
        std::string output;
        int status = -1;
        if (FILE* pipe = popen(command.c_str(), "r")) {
            char buffer[4096];
            size_t n;
            while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
            status = pclose(pipe);
        }
        unlink(sourcePath.c_str());
        if (status != 0) {
            p->log = "cuda_emu: `" + command + "` failed:\n" + output;
            unlink(partial.c_str());
            return NVRTC_ERROR_COMPILATION;
        }
        rename(partial.c_str(), library.c_str());  // atomic: concurrent compilers agree on the result
        p->log = output;
    }
    p->ptx = modulePrefix + library + "\n";
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetProgramLogSize(void* program, size_t* size) {
    Program* p = static_cast<Program*>(program);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    *size = p->log.size() + 1;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetProgramLog(void* program, char* log) {
    Program* p = static_cast<Program*>(program);
    if (!p) return NVRTC_ERROR_INVALID_PROGRAM;
    memcpy(log, p->log.c_str(), p->log.size() + 1);
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetPTXSize(void* program, size_t* size) {
    Program* p = static_cast<Program*>(program);
    if (!p || p->ptx.empty()) return NVRTC_ERROR_INVALID_PROGRAM;
    *size = p->ptx.size() + 1;
    return NVRTC_SUCCESS;
}

EXPORT nvrtcResult nvrtcGetPTX(void* program, char* ptx) {
    Program* p = static_cast<Program*>(program);
    if (!p || p->ptx.empty()) return NVRTC_ERROR_INVALID_PROGRAM;
    memcpy(ptx, p->ptx.c_str(), p->ptx.size() + 1);
    return NVRTC_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// cuBLAS

typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_INVALID_VALUE = 7,
       CUBLAS_STATUS_EXECUTION_FAILED = 13 };

static int gBlasHandle = 3;

EXPORT cublasStatus_t cublasCreate_v2(void** handle) {
    *handle = &gBlasHandle;
    return CUBLAS_STATUS_SUCCESS;
}

EXPORT cublasStatus_t cublasDestroy_v2(void* handle) { return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
EXPORT cublasStatus_t cublasSetStream_v2(void* handle, void* stream) {
    (void)stream;
    return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

EXPORT const char* cublasGetStatusString(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

/// C = alpha·op(A)·op(B) + beta·C, column-major (op 0: as is, 1: transposed). beta = 0 ignores C.
EXPORT cublasStatus_t cublasSgemm_v2(void* handle, int transa, int transb, int m, int n, int k, const float* alpha,
                                     const float* A, int lda, const float* B, int ldb, const float* beta, float* C,
                                     int ldc) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0 || transa < 0 || transa > 1 || transb < 0 || transb > 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (ldc < std::max(1, m) || lda < std::max(1, transa ? k : m) || ldb < std::max(1, transb ? n : k)) {
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    DeviceAccess access;
    auto inRange = [](const void* p, long long elements) {
        return elements <= 0 || isDeviceRange(reinterpret_cast<unsigned long long>(p), (size_t)elements * 4);
    };
    long long aCols = transa ? m : k, bCols = transb ? k : n;
    if (!inRange(A, (long long)lda * (aCols - 1) + (transa ? k : m)) ||
        !inRange(B, (long long)ldb * (bCols - 1) + (transb ? n : k)) || !inRange(C, (long long)ldc * (n - 1) + m)) {
        warn("cublasSgemm_v2: an operand is not (entirely) device memory");
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int l = 0; l < k; l++) {
                float a = transa ? A[l + (long long)i * lda] : A[i + (long long)l * lda];
                float b = transb ? B[j + (long long)l * ldb] : B[l + (long long)j * ldb];
                acc += (double)a * (double)b;
            }
            float* c = C + i + (long long)j * ldc;
            *c = (float)((double)*alpha * acc + (*beta == 0.0f ? 0.0 : (double)*beta * (double)*c));
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}
