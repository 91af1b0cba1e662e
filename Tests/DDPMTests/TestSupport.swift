// Shared helpers for the core tests: comparisons that report the worst difference,
// sample moments, and deterministic random inputs.
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@testable import DDPM

/// The largest |a_i − b_i|, and the index where it occurs.
func maxAbsDiff<A: Collection, B: Collection>(_ a: A, _ b: B) -> (value: Double, index: Int)
where A.Element: BinaryFloatingPoint, B.Element: BinaryFloatingPoint {
    precondition(a.count == b.count, "compared arrays differ in length: \(a.count) vs \(b.count)")
    var worst = (value: 0.0, index: -1)
    for (i, (x, y)) in zip(a, b).enumerated() {
        let d = abs(Double(x) - Double(y))
        if d > worst.value || d.isNaN { worst = (d.isNaN ? .infinity : d, i) }
    }
    return worst
}

/// The largest |a_i − b_i| / max(|b_i|, floor), and the index where it occurs.
func maxRelDiff<A: Collection, B: Collection>(_ a: A, _ b: B, floor: Double = 1e-300) -> (value: Double, index: Int)
where A.Element: BinaryFloatingPoint, B.Element: BinaryFloatingPoint {
    precondition(a.count == b.count, "compared arrays differ in length: \(a.count) vs \(b.count)")
    var worst = (value: 0.0, index: -1)
    for (i, (x, y)) in zip(a, b).enumerated() {
        let d = abs(Double(x) - Double(y)) / max(abs(Double(y)), floor)
        if d > worst.value || d.isNaN { worst = (d.isNaN ? .infinity : d, i) }
    }
    return worst
}

/// Asserts max |a − b| ≤ tol and reports the worst element.
func assertClose<A: Collection, B: Collection>(
    _ a: A, _ b: B, abs tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line
) where A.Element: BinaryFloatingPoint, B.Element: BinaryFloatingPoint {
    let (d, i) = maxAbsDiff(a, b)
    XCTAssertLessThanOrEqual(d, tol, "\(what): max |diff| = \(d) at index \(i) (tolerance \(tol))", file: file, line: line)
}

/// Asserts max |a − b|/|b| ≤ tol and reports the worst element.
func assertRelClose<A: Collection, B: Collection>(
    _ a: A, _ b: B, rel tol: Double, floor: Double = 1e-300, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) where A.Element: BinaryFloatingPoint, B.Element: BinaryFloatingPoint {
    let (d, i) = maxRelDiff(a, b, floor: floor)
    XCTAssertLessThanOrEqual(d, tol, "\(what): max relative diff = \(d) at index \(i) (tolerance \(tol))", file: file, line: line)
}

/// Asserts that `body` throws `DDPMError.invalidArgument`.
func assertInvalidArgument<T>(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("\(what): expected DDPMError.invalidArgument, nothing was thrown", file: file, line: line)
    } catch DDPMError.invalidArgument {
        // expected
    } catch {
        XCTFail("\(what): expected DDPMError.invalidArgument, got \(error)", file: file, line: line)
    }
}

/// Asserts that `body` throws `DDPMError.nonFinite`.
func assertNonFinite<T>(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("\(what): expected DDPMError.nonFinite, nothing was thrown", file: file, line: line)
    } catch DDPMError.nonFinite {
        // expected
    } catch {
        XCTFail("\(what): expected DDPMError.nonFinite, got \(error)", file: file, line: line)
    }
}

/// n standard normal draws from the engine's generator.
func normals(_ n: Int, seed: UInt64) -> [Float] {
    var rng = Philox(seed: seed)
    var out = [Float](repeating: 0, count: n)
    out.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: n) }
    return out
}

/// n uniform draws in [lo, hi) from the engine's generator.
func uniforms(_ n: Int, seed: UInt64, in range: ClosedRange<Float> = -1...1) -> [Float] {
    var rng = Philox(seed: seed)
    var out = [Float](repeating: 0, count: n)
    out.withUnsafeMutableBufferPointer { rng.fillUniform($0.baseAddress!, count: n) }
    return out.map { range.lowerBound + (range.upperBound - range.lowerBound) * $0 }
}

/// Per-column sample mean and (unbiased) variance of an (N, D) row-major array, in Double.
func columnMoments(_ x: [Float], dim D: Int) -> (mean: [Double], variance: [Double]) {
    let N = x.count / D
    var mean = [Double](repeating: 0, count: D), m2 = mean
    for n in 0..<N { for d in 0..<D { mean[d] += Double(x[n * D + d]) } }
    for d in 0..<D { mean[d] /= Double(N) }
    for n in 0..<N { for d in 0..<D { let e = Double(x[n * D + d]) - mean[d]; m2[d] += e * e } }
    return (mean, m2.map { $0 / Double(N - 1) })
}

/// The "trailing" timesteps τ_i = ⌊(S−i)·T/S⌋ − 1, i = 0..<S, computed another way than the
/// engine's division: τ_i + 1 is the number of j in 1...T with j·S ≤ (S−i)·T.
func trailingByCounting(T: Int, S: Int) -> [Int] {
    (0..<S).map { i in (1...T).filter { $0 * S <= (S - i) * T }.count - 1 }
}

/// A test case with a fresh folder under /tmp for each test (`dir`), removed afterwards.
class TemporaryFolderTestCase: XCTestCase {
    var dir = ""

    override func setUp() {
        var template = Array("/tmp/ddpm-test-XXXXXX".utf8CString)
        dir = String(cString: mkdtemp(&template)!)
    }

    override func tearDown() {
        removeFolder(dir)
    }
}

func kindOf(_ path: String) -> mode_t? {
    var st = stat()
    return lstat(path, &st) == 0 ? st.st_mode & S_IFMT : nil
}

func folderEntries(_ path: String) throws -> [String] {
    guard let d = opendir(path) else { throw DDPMError.io(path) }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// Removes a test folder and everything in it (links are removed, not followed).
func removeFolder(_ path: String) {
    chmod(path, 0o755)
    for name in (try? folderEntries(path)) ?? [] {
        let p = path + "/" + name
        if kindOf(p) == S_IFDIR { removeFolder(p) } else { unlink(p) }
    }
    rmdir(path)
}
