import ArgumentParser
import Compute
import Foundation
import Interop
import Model
import Training

struct ConvertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Move models between SwiftGPT, Hugging Face (transformers) and llama.cpp (GGUF).",
        discussion: """
            --from-hf DIR --out RUN reads a Hugging Face model directory (config.json, model.safetensors \
            or sharded model-0000x-of-0000y.safetensors with model.safetensors.index.json, tokenizer.json) \
            of model type gpt2 or llama, with F32, F16 or BF16 weights (memory-mapped, widened to fp32), and \
            writes a SwiftGPT checkpoint that generate, chat, serve, eval, sft and train --init-from use.
            --model RUN --to-hf DIR writes a directory that transformers loads with \
            AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained.
            --model RUN --to-gguf FILE [--type f32|f16|q8_0] writes a GGUF file for llama.cpp.
            Models with learned positions, layer norm and GELU are GPT-2; rope, rmsnorm and swiglu are Llama.
            """
    )

    @Option(name: .customLong("from-hf"), help: "A Hugging Face model directory to import.") var fromHF: String?
    @Option(help: "Where to write the imported SwiftGPT checkpoint (with --from-hf).") var out: String?
    @Option(help: "Cap the context length of an imported model (its KV cache is allocated at full context).")
    var context: Int?
    @Option(help: "A SwiftGPT run or checkpoint folder to export.") var model: String?
    @Option(name: .customLong("to-hf"), help: "Write a Hugging Face directory here.") var toHF: String?
    @Option(name: .customLong("to-gguf"), help: "Write a GGUF file here.") var toGGUF: String?
    @Option(help: "GGUF matrix type: f32, f16 or q8_0 (vectors stay f32).") var type: String = "f16"
    @Option(help: "Model name stored in the GGUF metadata (default: the run folder's name).") var name: String?

    func validate() throws {
        if fromHF != nil {
            guard out != nil else { throw ValidationError("--from-hf needs --out RUN (where to write the SwiftGPT checkpoint)") }
            guard model == nil, toHF == nil, toGGUF == nil else { throw ValidationError("use either --from-hf DIR --out RUN, or --model RUN with --to-hf/--to-gguf") }
        } else {
            guard model != nil else { throw ValidationError("give --from-hf DIR --out RUN, or --model RUN with --to-hf DIR or --to-gguf FILE") }
            guard toHF != nil || toGGUF != nil else { throw ValidationError("--model needs --to-hf DIR or --to-gguf FILE") }
        }
        guard GGUFType(rawValue: type) != nil else { throw ValidationError("--type must be f32, f16 or q8_0, got '\(type)'") }
        if let context, context < 1 { throw ValidationError("--context must be at least 1") }
    }

    func run() async throws {
        let start = MonotonicClock.now()
        if let fromHF, let out {
            let report = try HuggingFaceConverter.importModel(from: fromHF, to: out, maxContext: context)
            let c = report.config
            print("imported \(report.modelType) model from \(fromHF) (\(report.sourceDtypes.joined(separator: "/")) weights, "
                  + "\(fmt(Double(report.parameterCount) / 1e6, 2))M parameters: \(c.layers) layers, \(c.heads) heads"
                  + (c.kvHeads != c.heads ? " (\(c.kvHeads) key/value)" : "") + ", width \(c.width), context \(c.contextLength))")
            for note in report.notes { print("note: \(note)") }
            print("wrote \(out) in \(fmt(MonotonicClock.now() - start, 1)) s")
            print("next: swiftgpt generate --model \(out) --prompt \"Hello\"")
            return
        }
        guard let model else { return }
        let loaded = try Checkpoint.load(model, backend: CPUBackend())
        if let toHF {
            let report = try HuggingFaceConverter.exportModel(loaded.model, codec: loaded.codec, to: toHF)
            print("wrote \(report.modelType) model to \(toHF) (config.json, model.safetensors, tokenizer.json, tokenizer_config.json)")
            print("load it with: AutoModelForCausalLM.from_pretrained(\"\(toHF)\"), AutoTokenizer.from_pretrained(\"\(toHF)\")")
        }
        if let toGGUF {
            let folder = URL(fileURLWithPath: model).standardizedFileURL
            let base = ["best", "last"].contains(folder.lastPathComponent) ? folder.deletingLastPathComponent() : folder
            try GGUFExporter.export(loaded.model, codec: loaded.codec, name: name ?? base.lastPathComponent,
                                    type: GGUFType(rawValue: type)!, to: toGGUF)
            let size = (try? FileManager.default.attributesOfItem(atPath: toGGUF)[.size] as? Int) ?? 0
            print("wrote \(toGGUF) (\(type), \(fmt(Double(size) / 1_048_576, 1)) MiB)")
            print("run it with llama.cpp: llama-cli -m \(toGGUF) -p \"Hello\"")
        }
        print("done in \(fmt(MonotonicClock.now() - start, 1)) s")
    }
}
