// Tasks as chat prompts. A task turns a labelled TSV row into a conversation: the user turn asks
// the question, the assistant turn is the answer. The same rendering serves fine-tuning (`sft
// --task`) and evaluation (`eval --task`), so a fine-tuned model is asked exactly what it learned.

import Foundation
import Tokenizer

public enum EvaluationError: Error, CustomStringConvertible, Equatable {
    case badData(path: String, reason: String)
    case noUsableRows(path: String, malformed: Int)
    case noChatTemplate(String)
    case invalidSetting(String)

    public var description: String {
        switch self {
        case .badData(let path, let reason): return "\(path): \(reason)"
        case .noUsableRows(let path, let malformed):
            return "\(path) has no usable rows (\(malformed) malformed); see the messages above for the line numbers"
        case .noChatTemplate(let why):
            return "this model's tokenizer has no chat template (\(why)); task prompts need the chat tokens — "
                + "train the tokenizer with swiftgpt tokenizer train, which adds them"
        case .invalidSetting(let why): return why
        }
    }
}

/// A two-column TSV with a header line; rows that cannot be used are reported with their line
/// numbers rather than silently dropped.
public struct TSVFile: Sendable {
    public var header: [String]
    public var rows: [(line: Int, fields: [String])]
    /// "path:line: reason" for every unusable row, in file order.
    public var malformed: [String]

    public init(path: String, columns: Int = 2) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EvaluationError.badData(path: path, reason: "the file does not exist or cannot be read")
        }
        if data.starts(with: [0x1F, 0x8B]) {
            throw EvaluationError.badData(path: path, reason: "it is gzip-compressed; decompress it first (gunzip -k \(path))")
        }
        var header: [String]? = nil
        var rows: [(Int, [String])] = []
        var malformed: [String] = []
        var lineNumber = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var bytes = raw
            if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
            if bytes.isEmpty { continue }
            guard let line = String(validating: bytes, as: UTF8.self) else {
                malformed.append("\(path):\(lineNumber): invalid UTF-8")
                continue
            }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            if header == nil {
                guard fields.count == columns else {
                    throw EvaluationError.badData(path: path, reason: "the header line has \(fields.count) tab-separated columns; expected \(columns)")
                }
                header = fields.map { $0.trimmingCharacters(in: .whitespaces) }
                continue
            }
            guard fields.count == columns else {
                malformed.append("\(path):\(lineNumber): \(fields.count) tab-separated fields; expected \(columns)")
                continue
            }
            rows.append((lineNumber, fields.map { $0.trimmingCharacters(in: .whitespaces) }))
        }
        guard let header else { throw EvaluationError.badData(path: path, reason: "the file is empty (a TSV needs a header line)") }
        self.header = header
        self.rows = rows
        self.malformed = malformed
    }
}

// MARK: Prompt templates

/// A user-turn template with `{name}` placeholders, checked once when a task is built so that a
/// typo fails before a fine-tune starts rather than after it.
public struct PromptTemplate: Sendable, Equatable, CustomStringConvertible {
    public let text: String

    /// `required` must each occur; `allowed` may (anything else in braces is rejected).
    public init(_ text: String, required: [String], allowed: [String] = []) throws {
        var names: [String] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            names.append(String(rest[rest.index(after: open)..<close]))
            rest = rest[rest.index(after: close)...]
        }
        let known = required + allowed
        if let unknown = names.first(where: { !known.contains($0) }) {
            throw EvaluationError.invalidSetting("the prompt template has an unknown placeholder {\(unknown)}; "
                + "it may use \(known.map { "{\($0)}" }.joined(separator: ", "))")
        }
        if let missing = required.first(where: { !names.contains($0) }) {
            throw EvaluationError.invalidSetting("the prompt template must contain {\(missing)} (got \(String(reflecting: text)))")
        }
        self.text = text
    }

    /// The template with each `{name}` replaced by its value.
    public func render(_ values: [String: String]) -> String {
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            let name = String(rest[rest.index(after: open)..<close])
            out += values[name] ?? String(rest[open...close])
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    public var description: String { text }
}

// MARK: Sentiment

public struct SentimentExample: Sendable, Equatable {
    public var text: String
    /// Index into the task's labels.
    public var label: Int
    public var line: Int
}

public struct SentimentTask: Sendable {
    /// The answer words, in label-index order (SST-2: 0 negative, 1 positive).
    public var labels: [String]
    /// The user turn: `{text}` is the text, `{labels}` the label words ("negative or positive").
    public var template: PromptTemplate

    /// The question first, then the text.
    public static let defaultTemplate = "Is the sentiment of this text {labels}?\n{text}"

    public init(labels: [String] = ["negative", "positive"], template: String = SentimentTask.defaultTemplate) throws {
        guard labels.count >= 2, Set(labels).count == labels.count, labels.allSatisfy({ !$0.isEmpty }) else {
            throw EvaluationError.invalidSetting("sentiment needs at least two distinct, non-empty label words (got \(labels))")
        }
        self.labels = labels
        self.template = try PromptTemplate(template, required: ["text"], allowed: ["labels"])
    }

    /// Label words from a command-line list: "negative,positive".
    public init(commaSeparated list: String, template: String = SentimentTask.defaultTemplate) throws {
        try self.init(labels: list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }, template: template)
    }

    /// The question a model is asked about `text`.
    public func prompt(_ text: String) -> [ChatMessage] {
        let options = labels.count == 2 ? "\(labels[0]) or \(labels[1])" : labels.joined(separator: ", ")
        return [ChatMessage(role: .user, content: template.render(["labels": options, "text": text]))]
    }

    /// The prompt followed by the correct answer (a fine-tuning example).
    public func conversation(_ example: SentimentExample) -> [ChatMessage] {
        prompt(example.text) + [ChatMessage(role: .assistant, content: labels[example.label])]
    }

    /// Rows of (text, label); a label is an index (0, 1, …) or one of the label words.
    public func load(_ path: String) throws -> (examples: [SentimentExample], malformed: [String]) {
        let file = try TSVFile(path: path)
        var out: [SentimentExample] = []
        var malformed = file.malformed
        let known = labels.enumerated().map { "\($0.offset)" } + labels
        for (line, fields) in file.rows {
            let text = fields[0], raw = fields[1]
            guard !text.isEmpty else { malformed.append("\(path):\(line): empty text"); continue }
            let label: Int?
            if let i = Int(raw), i >= 0, i < labels.count { label = i } else {
                label = labels.firstIndex { $0.lowercased() == raw.lowercased() }
            }
            guard let label else {
                malformed.append("\(path):\(line): unknown label '\(raw)' (expected one of \(known.joined(separator: ", ")))")
                continue
            }
            out.append(SentimentExample(text: text, label: label, line: line))
        }
        guard !out.isEmpty else { throw EvaluationError.noUsableRows(path: path, malformed: malformed.count) }
        return (out, malformed)
    }
}

// MARK: Translation

public struct TranslationPair: Sendable, Equatable {
    public var source: String
    public var target: String
    public var line: Int
}

public struct TranslationTask: Sendable {
    /// Language codes or names of the two columns (from the TSV header, e.g. "en" and "de").
    public var source: String
    public var target: String
    /// The user turn: `{text}` is the source sentence, `{source}` and `{target}` the language names.
    public var template: PromptTemplate

    public static let defaultTemplate = "Translate from {source} to {target}:\n{text}"

    public init(source: String, target: String, template: String = TranslationTask.defaultTemplate) throws {
        self.source = source
        self.target = target
        self.template = try PromptTemplate(template, required: ["text"], allowed: ["source", "target"])
    }

    static let names = ["en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
                        "pt": "Portuguese", "nl": "Dutch", "cs": "Czech", "ru": "Russian", "zh": "Chinese", "ja": "Japanese"]

    /// A readable language name for a code ("de" → "German"); other headers are used as they are.
    public static func languageName(_ code: String) -> String { names[code.lowercased()] ?? code }

    public func prompt(_ text: String) -> [ChatMessage] {
        [ChatMessage(role: .user, content: template.render(["source": Self.languageName(source), "target": Self.languageName(target), "text": text]))]
    }

    public func conversation(_ pair: TranslationPair) -> [ChatMessage] {
        prompt(pair.source) + [ChatMessage(role: .assistant, content: pair.target)]
    }

    /// Loads a source/target TSV; the header names the two languages.
    public static func load(_ path: String, template: String = TranslationTask.defaultTemplate) throws
        -> (task: TranslationTask, pairs: [TranslationPair], malformed: [String]) {
        let file = try TSVFile(path: path)
        var out: [TranslationPair] = []
        var malformed = file.malformed
        for (line, fields) in file.rows {
            if fields[0].isEmpty { malformed.append("\(path):\(line): empty source"); continue }
            if fields[1].isEmpty { malformed.append("\(path):\(line): empty target"); continue }
            out.append(TranslationPair(source: fields[0], target: fields[1], line: line))
        }
        guard !out.isEmpty else { throw EvaluationError.noUsableRows(path: path, malformed: malformed.count) }
        return (try TranslationTask(source: file.header[0], target: file.header[1], template: template), out, malformed)
    }
}

// MARK: The task a run was fine-tuned on

/// What `sft --task` fine-tuned a run on, kept as `RUN/task.json`, so that `eval --task` asks the
/// fine-tuned model the question it learned without the template being repeated on the command line.
public struct TaskRecord: Codable, Sendable, Equatable {
    public var task: String
    /// sentiment: the label words, in label-index order.
    public var labels: [String]?
    public var template: String

    public static let fileName = "task.json"

    public init(task: String, labels: [String]? = nil, template: String) {
        self.task = task
        self.labels = labels
        self.template = template
    }

    /// Writes `directory/task.json` (creating the folder), replacing the file in one step.
    public func write(toRun directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(self).write(to: URL(fileURLWithPath: directory + "/" + Self.fileName), options: .atomic)
    }

    /// The record in `directory` or, for a checkpoint inside a run (RUN/best, RUN/step-000500), in
    /// the run folder above it; nil when there is none.
    public static func find(near directory: String) throws -> (record: TaskRecord, path: String)? {
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        for folder in [url, url.deletingLastPathComponent()] {
            let path = folder.appendingPathComponent(fileName).path
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            do {
                return (try JSONDecoder().decode(TaskRecord.self, from: data), path)
            } catch {
                throw EvaluationError.badData(path: path, reason: "not a task record (\(error)); fix or delete it, or pass --prompt-template")
            }
        }
        return nil
    }
}
