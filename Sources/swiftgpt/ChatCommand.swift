import ArgumentParser
import Chat
import Engine
import Foundation
import Tokenizer

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Talk to a fine-tuned model in the terminal (streaming replies, history within the context).",
        discussion: """
            Type a message and press Enter; the reply streams as it is generated. Ctrl-C stops the \
            current reply (the conversation goes on); Ctrl-C at the prompt or Ctrl-D leaves. When the \
            conversation would no longer fit the model's context, the oldest turns are dropped (never \
            the system prompt) and a note says so. Commands: /help, /reset (forget the conversation), \
            /system TEXT (set the system prompt and reset), /set NAME VALUE (temperature, top_k, top_p, \
            min_p, repetition_penalty, presence_penalty, frequency_penalty, seed, max_tokens), /show, \
            /quit. When standard input is not a terminal, every line is one message and only the \
            replies are printed, one per line.
            """
    )

    @Option(help: "A run folder (uses best/ then last/) or a checkpoint folder; must have a BPE tokenizer with chat tokens.")
    var model: String
    @Option(help: "System prompt (kept through the whole conversation).") var system: String?
    @Option(help: "Most tokens per reply.") var maxTokens: Int = 256
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var device: DeviceOptions

    func run() async throws {
        var params = try sampling.parameters()
        if params.seed == nil { params.seed = UInt64.random(in: 0...UInt64.max) }
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        let (engine, codec, directory) = try loadEngine(model, format: try sampling.weightFormat(), kvCache: try sampling.cacheFormat(),
                                                          backend: try device.backend())
        let session = try ChatSession(engine: engine, codec: codec, system: system, sampling: params, maxReplyTokens: maxTokens)
        let interactive = isatty(0) != 0
        let interrupt = InterruptFlag.install()
        InterruptFlag.catching = 0
        if interactive {
            print("SwiftGPT chat — \(directory) (context \(engine.model.capacity) tokens). /help for commands, Ctrl-D to leave.")
        }
        while true {
            if interactive { print("\u{1B}[1myou>\u{1B}[0m ", terminator: ""); fflush(nil) }
            guard let line = readLine(strippingNewline: true) else {
                if interactive { print("") }
                return
            }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text.hasPrefix("/") {
                if try handleCommand(text, session: session, interactive: interactive) { return }
                continue
            }
            if interactive { print("\u{1B}[1mbot>\u{1B}[0m ", terminator: ""); fflush(nil) }
            do {
                let reply = try interrupt.catching {
                    try session.send(text, shouldContinue: { !interrupt.isSet }, onText: { piece in
                        print(interactive ? piece : piece.replacingOccurrences(of: "\n", with: " "), terminator: "")
                        fflush(nil)
                    })
                }
                print("")
                if interactive {
                    if reply.finishReason == .cancelled { print("[stopped]") }
                    if reply.finishReason == .length { print("[reply cut at \(reply.completionTokens) tokens]") }
                    if reply.droppedMessages > 0 {
                        print("[the conversation outgrew the context: dropped the \(reply.droppedMessages) oldest messages]")
                    }
                }
            } catch let error as ChatError {
                print("")
                printError("\(error)")
            }
        }
    }

    /// Returns true when the user asked to leave.
    private func handleCommand(_ text: String, session: ChatSession, interactive: Bool) throws -> Bool {
        let parts = text.split(separator: " ", maxSplits: 2).map(String.init)
        switch parts[0] {
        case "/quit", "/exit", "/bye": return true
        case "/reset":
            session.reset()
            if interactive { print("[conversation cleared]") }
        case "/system":
            session.system = parts.count > 1 ? String(text.dropFirst("/system".count)).trimmingCharacters(in: .whitespaces) : nil
            session.reset()
            if interactive { print(session.system.map { "[system prompt set: \($0)]" } ?? "[system prompt removed]") }
        case "/set":
            guard parts.count == 3 else {
                printError("usage: /set NAME VALUE, e.g. /set temperature 0.7")
                return false
            }
            do {
                try session.set(parts[1], parts[2])
                if interactive { print("[\(parts[1]) = \(parts[2])]") }
            } catch {
                printError("\(error)")
            }
        case "/show":
            let s = session.sampling
            print("temperature \(s.temperature), top_k \(s.topK), top_p \(s.topP), min_p \(s.minP), "
                  + "repetition_penalty \(s.repetitionPenalty), presence_penalty \(s.presencePenalty), "
                  + "frequency_penalty \(s.frequencyPenalty), seed \(s.seed.map(String.init) ?? "random"), "
                  + "max_tokens \(session.maxReplyTokens); system: \(session.system ?? "(none)"); "
                  + "\(session.history.count) messages in history")
        case "/help":
            print("""
                /reset                 forget the conversation
                /system TEXT           set the system prompt (and reset); /system alone removes it
                /set NAME VALUE        temperature, top_k, top_p, min_p, repetition_penalty,
                                       presence_penalty, frequency_penalty, seed, max_tokens
                /show                  current settings
                /quit                  leave (also Ctrl-D)
                Ctrl-C stops a reply while it is being written.
                """)
        default:
            printError("unknown command \(parts[0]); /help lists them")
        }
        return false
    }
}
