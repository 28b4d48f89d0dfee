import XCTest
import Tokenizer
@testable import Training

/// The quickstart's generated data: held-out questions must test answering from pre-training, not
/// something fine-tuning never showed (an operand or a value that never appears in any dialogue).
final class SyntheticWorldTests: XCTestCase {
    func testTheWorldIsDeterministicForASeed() {
        let a = SyntheticWorld(seed: 7), b = SyntheticWorld(seed: 7), c = SyntheticWorld(seed: 8)
        XCTAssertEqual(a.pretrainingText(repeats: 2), b.pretrainingText(repeats: 2))
        XCTAssertEqual(a.heldOutQuestions.map(\.answer), b.heldOutQuestions.map(\.answer))
        XCTAssertNotEqual(a.pretrainingText(repeats: 2), c.pretrainingText(repeats: 2))
    }

    func testHeldOutSumsUseOperandsAndResultsThatFineTuningShows() throws {
        let world = SyntheticWorld(seed: 7)
        func sum(_ q: SyntheticWorld.Question) -> (Int, Int)? {
            let words = q.question.dropLast().split(separator: " ")  // "What is 3 plus 4?"
            guard words.count == 5, words[3] == "plus", let a = Int(words[2]), let b = Int(words[4]) else { return nil }
            return (a, b)
        }
        let train = world.trainQuestions.compactMap(sum), held = world.heldOutQuestions.compactMap(sum)
        XCTAssertEqual(held.count, 20)
        XCTAssertEqual(train.count, 80)
        for (a, b) in held {
            XCTAssertTrue(train.contains { $0.0 == a }, "first operand \(a) never asked in fine-tuning")
            XCTAssertTrue(train.contains { $0.1 == b }, "second operand \(b) never asked in fine-tuning")
            XCTAssertTrue(train.contains { $0.0 + $0.1 == a + b }, "result \(a + b) never answered in fine-tuning")
        }
    }

    func testEveryPersonHasOneHeldOutFactAndPreTrainingStatesItButNeverAsksIt() {
        let world = SyntheticWorld(seed: 7)
        let text = world.pretrainingText(repeats: 1)
        let people = world.heldOutQuestions.filter { !$0.question.contains(" plus ") }
        XCTAssertEqual(people.count, world.people.count)
        for q in people {
            XCTAssertTrue(text.contains(q.answer.dropLast()), "pre-training never states \(q.answer)")
            XCTAssertFalse(text.contains(q.question), "pre-training asks the held-out question \(q.question)")
        }
        // The fine-tuning questions appear in pre-training as plain question-answer text.
        for q in world.trainQuestions { XCTAssertTrue(text.contains("Q: \(q.question) A: \(q.answer)")) }
        // Dialogues ask only training questions.
        let asked = Set(world.dialogues().flatMap { $0.filter { $0.role == .user }.map(\.content) })
        for q in world.heldOutQuestions {
            XCTAssertFalse(SyntheticWorld.askings.indices.contains { asked.contains(SyntheticWorld.asked(q, $0)) })
        }
    }
}
