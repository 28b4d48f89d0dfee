// swift-tools-version: 6.0
import PackageDescription

// Layers (arrows point down): swiftgpt (CLI) -> Model -> Compute -> CSupport, TileKernelAVX512.
// See ../shared/DESIGN.md in the project workspace for the full plan.
// Release builds on x86-64 use AVX2 + FMA (every x86 server CPU since 2013); the CLI refuses to run,
// with a clear message, on a CPU without them.
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell"]
#else
let cpuFlags: [String] = []
#endif
let optimise: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"] + cpuFlags, .when(configuration: .release))]
// The one module compiled for AVX-512 (its kernel runs only where CPUID and the OS allow it).
// skylake-avx512: AVX-512 F/CD/BW/DQ/VL, what every AVX-512 CPU (Intel since Skylake, AMD since
// Zen 4) has; its SIMD16 arithmetic compiles to 512-bit instructions.
#if arch(x86_64)
let avx512Flags = ["-target-cpu", "skylake-avx512"]
#else
let avx512Flags: [String] = []
#endif

let package = Package(
    name: "SwiftGPT",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "swiftgpt", targets: ["swiftgpt"]),
        .library(name: "Compute", targets: ["Compute"]),
        .library(name: "Model", targets: ["Model"]),
        .library(name: "Tokenizer", targets: ["Tokenizer"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "Chat", targets: ["Chat"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
        .library(name: "Server", targets: ["Server"]),
        .library(name: "Interop", targets: ["Interop"]),
        .library(name: "CUDA", targets: ["CUDA"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        // C helpers that Swift cannot express: CPU feature detection (cpuid).
        .target(name: "CSupport", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        // Byte-level BPE: pre-tokenizer, trainer, encoder/decoder, chat format. Depends on nothing of ours.
        .target(name: "Tokenizer", swiftSettings: optimise),
        // Buffers, the Backend protocol, CPU kernels, BLAS loading, AdamW, RNG, parallelFor.
        // The tile kernel's AVX-512 form, compiled for AVX-512 (called only on CPUs that have it).
        .target(name: "TileKernelAVX512", swiftSettings: [
            .unsafeFlags(["-Ounchecked", "-wmo"] + avx512Flags, .when(configuration: .release)),
            .unsafeFlags(avx512Flags, .when(configuration: .debug)),
        ]),
        .target(
            name: "Compute", dependencies: ["CSupport", "TileKernelAVX512"], swiftSettings: optimise,
            linkerSettings: [.linkedFramework("Accelerate", .when(platforms: [.macOS]))]),
        // GPT configuration, parameter/activation layouts, forward/backward, safetensors I/O.
        .target(name: "Model", dependencies: ["Compute"], swiftSettings: optimise),
        // Data shards and loaders, schedules, the training loops, checkpoints, metrics.
        .target(name: "Training", dependencies: ["Model", "Compute", "Tokenizer"], swiftSettings: optimise),
        // Generation: KV cache, samplers, the generation loop. Token ids in, token ids out.
        .target(name: "Engine", dependencies: ["Model", "Compute"], swiftSettings: optimise),
        // Text on top of the engine: streaming detokenizer, stop strings, chat sessions.
        .target(name: "Chat", dependencies: ["Engine", "Tokenizer", "Training"], swiftSettings: optimise),
        // Tasks as chat prompts (sentiment, translation), batched task evaluation, BLEU/chrF/F1.
        .target(name: "Evaluation", dependencies: ["Engine", "Tokenizer", "Training", "Model", "Compute"], swiftSettings: optimise),
        // The OpenAI-compatible HTTP API and the web chat page (Hummingbird 2).
        .target(
            name: "Server",
            dependencies: ["Engine", "Chat", "Tokenizer", "Training",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            resources: [.copy("Web")], swiftSettings: optimise),
        // Hugging Face directories in and out, GGUF export for llama.cpp.
        .target(name: "Interop", dependencies: ["Model", "Compute", "Tokenizer", "Training"], swiftSettings: optimise),
        // The NVIDIA GPU backend: driver, NVRTC and cuBLAS loaded with dlopen at run time, kernels as
        // CUDA C compiled on first use. Building it needs no CUDA.
        .target(name: "CUDA", dependencies: ["Compute"], swiftSettings: optimise,
                linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .executableTarget(
            name: "swiftgpt",
            dependencies: ["CSupport", "Model", "Compute", "Tokenizer", "Training", "Engine", "Chat", "Evaluation", "Server", "Interop", "CUDA", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: optimise),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Model", "Compute"], exclude: ["Fixtures"]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "Engine", "Tokenizer", "Training", "Model", "Compute"], exclude: ["Fixtures"]),
        .testTarget(name: "ServerTests", dependencies: ["Server", "Engine", "Tokenizer", "Training", "Model", "Compute",
                                                       .product(name: "HummingbirdTesting", package: "hummingbird")]),
        .testTarget(name: "ChatTests", dependencies: ["Chat", "Engine", "Tokenizer", "Training", "Model", "Compute"]),
        .testTarget(name: "ComputeTests", dependencies: ["Compute"]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Model", "Compute", "Tokenizer", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "Compute"], exclude: ["Fixtures"]),
        .testTarget(name: "CUDATests", dependencies: ["CUDA", "Engine", "Model", "Compute", "TestSupport"]),
        .testTarget(name: "InteropTests", dependencies: ["Interop", "Engine", "Training", "Tokenizer", "Model", "Compute", "TestSupport"],
                    exclude: ["Fixtures"]),
    ]
)
