// The quickstart's built-in data: a small procedural world (people, the towns they live in, their
// favourite colours and pets) and single-digit arithmetic. Deterministic for a seed.
//
// - Pre-training text states every fact in several phrasings, inside short stories.
// - Dialogues ask about two of each person's three facts and most sums (SFT); the rest are held out, so task
//   accuracy measures whether fine-tuning taught the model to answer from what it learnt in
//   pre-training, not to repeat answers it was shown.
// - Preference pairs set a full-sentence correct answer against a wrong one or a bare value (DPO).

import Compute
import Foundation
import Tokenizer

public struct SyntheticWorld: Sendable {
    public struct Person: Sendable {
        public let name: String
        public let town: String
        public let colour: String
        public let pet: String
        public let pets: Int
    }

    /// A question with its reference answer and the value the answer must contain.
    public struct Question: Sendable {
        public let question: String
        public let answer: String
        public let key: String
        /// Wrong values of the same kind (for rejected answers).
        public let wrongAnswers: [String]
        /// The same answer without a full sentence ("Lakeside."): correct, but not the preferred style.
        public var shortAnswer: String { key + "." }
    }

    static let names = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kira", "Leo", "Mia", "Nico",
                        "Omar", "Pia", "Quin", "Rosa", "Sami", "Tara", "Uma", "Vik", "Wren", "Yara"]
    static let towns = ["Oakvale", "Riverton", "Stonebridge", "Millbrook", "Ashford", "Fernhill", "Lakeside", "Cobalt Bay"]
    static let colours = ["red", "blue", "green", "yellow", "purple", "orange", "silver", "black"]
    static let petKinds = [("cat", "cats"), ("dog", "dogs"), ("rabbit", "rabbits"), ("parrot", "parrots"), ("goat", "goats"), ("fish", "fish")]
    static let numberWords = ["zero", "one", "two", "three", "four", "five"]

    public let people: [Person]
    public let seed: UInt64
    /// Questions for fine-tuning (and DPO) and held-out questions for measuring accuracy.
    public let trainQuestions: [Question]
    public let heldOutQuestions: [Question]

    public init(seed: UInt64 = 7) {
        self.seed = seed
        var rng = SeededRandom(seed: seed)
        func pick<T>(_ xs: [T]) -> T { xs[Int(rng.next() % UInt64(xs.count))] }
        var people: [Person] = []
        for name in Self.names {
            let pet = pick(Self.petKinds)
            people.append(Person(name: name, town: pick(Self.towns), colour: pick(Self.colours), pet: pet.1,
                                 pets: 1 + Int(rng.next() % 5)))
        }
        self.people = people
        var questions: [(Question, held: Bool)] = []
        for (i, p) in people.enumerated() {
            // Every person is asked about in fine-tuning, but one of their three facts (a different
            // one for each person) never is: the model must answer it from pre-training.
            let heldOut = i % 3
            questions.append((Question(question: "Where does \(p.name) live?", answer: "\(p.name) lives in \(p.town).", key: p.town,
                                       wrongAnswers: Self.towns.filter { $0 != p.town }.map { "\(p.name) lives in \($0)." }), heldOut == 0))
            questions.append((Question(question: "What is \(p.name)'s favourite colour?", answer: "\(p.name)'s favourite colour is \(p.colour).",
                                       key: p.colour, wrongAnswers: Self.colours.filter { $0 != p.colour }.map { "\(p.name)'s favourite colour is \($0)." }), heldOut == 1))
            questions.append((Question(question: "How many \(p.pet) does \(p.name) have?", answer: "\(p.name) has \(p.pets) \(p.pet).",
                                       key: "\(p.pets)", wrongAnswers: (1...5).filter { $0 != p.pets }.map { "\(p.name) has \($0) \(p.pet)." }), heldOut == 2))
        }
        for a in 0...9 {
            for b in 0...9 {
                // A fifth of the sums are held out, spread so that every first and second operand
                // and every result also occurs in fine-tuning (holding out every "… plus 2" and
                // "… plus 7" taught fine-tuning never to copy those operands).
                let held = (3 * a + b) % 5 == 2
                questions.append((Question(question: "What is \(a) plus \(b)?", answer: "\(a) plus \(b) is \(a + b).", key: "\(a + b)",
                                           wrongAnswers: [a + b - 2, a + b - 1, a + b + 1, a + b + 2].filter { $0 >= 0 }.map { "\(a) plus \(b) is \($0)." }), held))
            }
        }
        trainQuestions = questions.filter { !$0.held }.map(\.0)
        heldOutQuestions = questions.filter { $0.held }.map(\.0)
    }

    /// Pre-training text: every fact (held-out ones included) in several phrasings and short
    /// stories, `repeats` passes in a seeded order.
    public func pretrainingText(repeats: Int = 12) -> String {
        var rng = SeededRandom(seed: seed &+ 101)
        var lines: [String] = []
        for _ in 0..<repeats {
            var pass: [String] = []
            for p in people {
                let petWord = p.pets == 1 ? singular(p.pet) : p.pet
                pass.append("\(p.name) lives in \(p.town). \(p.name)'s favourite colour is \(p.colour). \(p.name) has \(p.pets) \(p.pet).")
                pass.append("In \(p.town) lives \(p.name), who has \(Self.numberWords[p.pets]) \(petWord) and loves the colour \(p.colour).")
                pass.append("\(p.name) has \(p.pets) \(p.pet) and a \(p.colour) door in \(p.town). \(p.name) lives in \(p.town).")
                pass.append("One morning \(p.name) left \(p.town) with \(p.pets) \(p.pet). The sky was \(p.colour), \(p.name)'s favourite colour.")
            }
            for a in 0...9 {
                for b in 0...9 {
                    pass.append("\(a) plus \(b) is \(a + b).")
                    pass.append("If you add \(a) and \(b) you get \(a + b). So \(a) plus \(b) is \(a + b).")
                }
            }
            // Questions of the fine-tuning set with their answers, as plain text (no chat template):
            // the model meets facts being asked about while it learns them, which makes the facts
            // it is never asked about in pre-training easier to extract later (mixed training).
            for q in trainQuestions { pass.append("Q: \(q.question) A: \(q.answer)") }
            for i in stride(from: pass.count - 1, to: 0, by: -1) { pass.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            lines += pass
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func singular(_ plural: String) -> String {
        Self.petKinds.first { $0.1 == plural }?.0 ?? plural
    }

    public static let askings = ["%@", "Please tell me: %@", "Quick question. %@", "I was wondering. %@"]

    /// The question as a user would type it with asking `index` (0: plain; 1 and 3: the phrasings
    /// whose fine-tuning replies are bare values).
    public static func asked(_ q: Question, _ index: Int) -> String {
        askings[index % askings.count].replacingOccurrences(of: "%@", with: q.question)
    }

    /// Whether a reply is a full sentence rather than a bare value ("Lakeside.").
    public static func isFullSentence(_ reply: String) -> Bool {
        reply.split(whereSeparator: { $0 == " " }).count >= 3
    }

    /// Fine-tuning conversations about the training questions: each question in several phrasings,
    /// some two-question dialogues.
    public func dialogues() -> [[ChatMessage]] {
        var rng = SeededRandom(seed: seed &+ 202)
        var out: [[ChatMessage]] = []
        for q in trainQuestions {
            for j in Self.askings.indices {
                // Half the replies are full sentences, half only the value — bare whenever the user
                // asks "Please tell me: …" or "I was wondering. …" (an inconsistent style, as
                // collected dialogues often have). Preference optimisation then teaches that full
                // sentences are preferred, whatever the phrasing.
                out.append([ChatMessage(role: .user, content: Self.asked(q, j)),
                            ChatMessage(role: .assistant, content: j % 2 == 0 ? q.answer : q.shortAnswer)])
            }
        }
        for _ in 0..<(trainQuestions.count / 2) {
            let a = trainQuestions[Int(rng.next() % UInt64(trainQuestions.count))]
            let b = trainQuestions[Int(rng.next() % UInt64(trainQuestions.count))]
            out.append([ChatMessage(role: .user, content: a.question), ChatMessage(role: .assistant, content: a.answer),
                        ChatMessage(role: .user, content: b.question), ChatMessage(role: .assistant, content: b.answer)])
        }
        for i in stride(from: out.count - 1, to: 0, by: -1) { out.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return out
    }

    /// Correct against wrong answers, for training (train questions) or evaluation (held-out ones).
    public func preferencePairs(heldOut: Bool) -> [PreferencePair] {
        var rng = SeededRandom(seed: seed &+ (heldOut ? 404 : 303))
        var out: [PreferencePair] = []
        for q in heldOut ? heldOutQuestions : trainQuestions {
            for _ in 0..<(heldOut ? 1 : 2) {
                let wrong = q.wrongAnswers[Int(rng.next() % UInt64(q.wrongAnswers.count))]
                out.append(PreferencePair(prompt: [ChatMessage(role: .user, content: q.question)], chosen: q.answer, rejected: wrong))
            }
        }
        return out
    }

    /// Whether a reply answers `q` correctly: it contains the expected value as a whole word and
    /// no other value of the same kind.
    public static func isCorrect(_ reply: String, for q: Question) -> Bool {
        let words = Set(reply.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init))
        let keyWords = q.key.split(separator: " ").map(String.init)
        guard keyWords.allSatisfy(words.contains) else { return false }
        if let n = Int(q.key) {
            // Numbers: no other number may appear except the question's own operands.
            let operands = Set(q.question.split(whereSeparator: { !$0.isNumber }).map(String.init))
            return words.filter { Int($0) != nil && $0 != String(n) && !operands.contains($0) }.isEmpty
        }
        return true
    }
}
