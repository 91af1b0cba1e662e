// The thread pool under a resize from another thread (issue 19, finding 1): parallelFor and
// resize each wait for the other, and a worker's wake-up reaching the wrong waiter left both
// asleep forever. Each test runs a bounded number of iterations on two threads; a watchdog
// (a semaphore wait with a generous limit) turns a hang into a failure instead of a stuck run.
import Foundation
import XCTest
@testable import DDPM

final class WorkPoolTests: XCTestCase {
    override func tearDown() {
        setWorkPoolSize(BLASThreads.initial)
        super.tearDown()
    }

    /// Runs `a` and `b` on two threads; fails if both have not finished after `limit` seconds.
    func runConcurrently(limit: Double = 300, _ a: @escaping @Sendable () -> Void, _ b: @escaping @Sendable () -> Void,
                         file: StaticString = #filePath, line: UInt = #line) {
        let finished = DispatchSemaphore(value: 0)
        for body in [a, b] {
            Thread { body(); finished.signal() }.start()
        }
        for _ in 0..<2 {
            XCTAssertEqual(finished.wait(timeout: .now() + limit), .success,
                           "the two threads did not both finish: deadlock between parallelFor and resize", file: file, line: line)
        }
    }

    func testResizeWhileJobsRunDoesNotDeadlock() {
        setWorkPoolSize(2)
        let pool = WorkPool.shared
        let total = Counter(0)
        let job: @Sendable (Int, Int) -> Void = { _, _ in total.add(1) }
        let jobs = 20_000
        runConcurrently({
            for _ in 0..<jobs { pool.parallelFor(chunks: 4, job) }
        }, {
            for i in 0..<2_000 { pool.resize(1 + i % 3) }
        })
        XCTAssertEqual(total.load(), 4 * jobs, "every chunk of every job ran exactly once")
    }

    func testWorkerIndexStaysBelowTheJobsLimitWhileThePoolGrows() {
        setWorkPoolSize(1)
        let pool = WorkPool.shared
        let tooHigh = Counter(0)
        let job: @Sendable (Int, Int) -> Void = { _, w in if w >= 2 { tooHigh.add(1) } }
        runConcurrently({
            for _ in 0..<20_000 { pool.parallelFor(chunks: 8, workers: 2, job) }
        }, {
            for i in 0..<2_000 { pool.resize(1 + i % 4) }
        })
        XCTAssertEqual(tooHigh.load(), 0, "a chunk ran on a worker index at or above the job's limit")
    }

    func testPredictionWhileThreadCountChanges() throws {
        // The public path: a model predicting on one thread while another sets the thread count.
        let model = try DiffusionModel(schedule: try NoiseSchedule.cosine(steps: 50),
                                       network: .mlp(ResidualMLP.Config(dataDim: 2, hidden: 16, depth: 1)))
        let x = uniforms(2 * 600, seed: 3)
        @Sendable func predict(_ model: DiffusionModel) throws -> [Float] {
            var out = [Float](repeating: 0, count: x.count)
            try out.withUnsafeMutableBufferPointer {
                try model.predict($0.baseAddress!, x: x, t: 7, labels: nil, batch: x.count / 2)
            }
            return out
        }
        let reference = try predict(model)
        let mismatches = Counter(0)
        let box = UncheckedBox(model)
        runConcurrently({
            for _ in 0..<300 where try! predict(box.value) != reference { mismatches.add(1) }
        }, {
            for i in 0..<600 { setWorkPoolSize(1 + i % 3) }
        })
        XCTAssertEqual(mismatches.load(), 0, "predictions must not depend on the thread count, even while it changes")
    }

    func testParallelForIfFreeRunsOnlyOnAFreePool() {
        let pool = WorkPool.shared
        let ran = Counter(0), prepared = Counter(0), beforePrepare = Counter(0)
        let job: @Sendable (Int, Int) -> Void = { _, _ in
            if prepared.load() == 0 { beforePrepare.add(1) }
            ran.add(1)
        }
        // One thread: nothing to share, the caller does the work itself.
        setWorkPoolSize(1)
        XCTAssertFalse(pool.parallelForIfFree(chunks: 4, prepare: { prepared.add(1) }, job))
        XCTAssertEqual(ran.load() + prepared.load(), 0, "a refused call runs and prepares nothing")
        // A free pool of two: every chunk once, after `prepare`.
        setWorkPoolSize(2)
        XCTAssertTrue(pool.parallelForIfFree(chunks: 4, prepare: { prepared.add(1) }, job))
        XCTAssertEqual(ran.load(), 4)
        XCTAssertEqual(prepared.load(), 1)
        XCTAssertEqual(beforePrepare.load(), 0, "no chunk ran before prepare")
        // From inside a job the pool is busy: refused, so a nested GEMM runs on its caller.
        let refusedInside = Counter(0)
        pool.parallelFor(chunks: 3) { _, _ in
            if !pool.parallelForIfFree(chunks: 4, prepare: {}, job) { refusedInside.add(1) }
        }
        XCTAssertEqual(refusedInside.load(), 3)
        XCTAssertEqual(ran.load(), 4, "the nested calls ran nothing themselves")
    }
}

/// Hands a non-Sendable value to another thread in a test that serialises its use.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A minimal atomic counter for the tests.
final class Counter: @unchecked Sendable {
    private var value: Int
    private let lock = NSLock()
    init(_ value: Int) { self.value = value }
    func add(_ n: Int) { lock.lock(); value += n; lock.unlock() }
    func load() -> Int { lock.lock(); defer { lock.unlock() }; return value }
}
