// Noise schedules: β for each kind against its closed form, every derived table against
// formulas re-derived here, reference values computed separately with numpy
// (np.linspace / np.cumprod in float64), validation errors, and T = 1.
import XCTest
@testable import DDPM

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class ScheduleTests: XCTestCase {
    /// Recomputes every derived table from `schedule.betas` with plain loops and compares.
    func checkDerivedTables(_ s: NoiseSchedule, _ name: String, file: StaticString = #filePath, line: UInt = #line) {
        let T = s.betas.count
        XCTAssertEqual(s.count, T, "\(name): count", file: file, line: line)
        var alphas: [Double] = [], alphaBar: [Double] = [], alphaBarPrev: [Double] = []
        var product = 1.0
        for t in 0..<T {
            alphas.append(1 - s.betas[t])
            alphaBarPrev.append(product)  // ᾱ_{t−1}, with ᾱ_{−1} = 1
            product *= 1 - s.betas[t]
            alphaBar.append(product)
        }
        var postVar: [Double] = [], c0: [Double] = [], ct: [Double] = []
        for t in 0..<T {
            let (b, a, ab, abPrev) = (s.betas[t], alphas[t], alphaBar[t], alphaBarPrev[t])
            postVar.append(b * (1 - abPrev) / (1 - ab))  // β̃_t = β_t·(1−ᾱ_{t−1})/(1−ᾱ_t)
            c0.append(sqrt(abPrev) * b / (1 - ab))  // √ᾱ_{t−1}·β_t/(1−ᾱ_t)
            ct.append(sqrt(a) * (1 - abPrev) / (1 - ab))  // √α_t·(1−ᾱ_{t−1})/(1−ᾱ_t)
        }
        // log β̃ with the t = 0 entry (β̃_0 = 0) replaced by β̃_1, or by β_0 when T = 1.
        let logClipped = (0..<T).map { t in log(t > 0 ? postVar[t] : (T > 1 ? postVar[1] : s.betas[0])) }
        let rel = 1e-12
        assertRelClose(s.alphas, alphas, rel: rel, "\(name): alphas", file: file, line: line)
        assertRelClose(s.alphaBar, alphaBar, rel: rel, "\(name): alphaBar", file: file, line: line)
        assertRelClose(s.alphaBarPrev, alphaBarPrev, rel: rel, "\(name): alphaBarPrev", file: file, line: line)
        assertRelClose(s.sqrtAlphaBar, alphaBar.map { sqrt($0) }, rel: rel, "\(name): sqrtAlphaBar", file: file, line: line)
        assertRelClose(s.sqrtOneMinusAlphaBar, alphaBar.map { sqrt(1 - $0) }, rel: rel,
                       "\(name): sqrtOneMinusAlphaBar", file: file, line: line)
        assertRelClose(s.sqrtRecipAlpha, alphas.map { 1 / sqrt($0) }, rel: rel, "\(name): sqrtRecipAlpha", file: file, line: line)
        assertClose(s.posteriorVariance, postVar, abs: 1e-15, "\(name): posteriorVariance", file: file, line: line)
        assertRelClose(s.posteriorVariance, postVar, rel: rel, floor: 1e-300, "\(name): posteriorVariance (relative)",
                       file: file, line: line)
        assertRelClose(s.posteriorLogVarianceClipped, logClipped, rel: rel, floor: 1e-12,
                       "\(name): posteriorLogVarianceClipped", file: file, line: line)
        assertRelClose(s.posteriorMeanCoefX0, c0, rel: rel, floor: 1e-300, "\(name): posteriorMeanCoefX0", file: file, line: line)
        assertClose(s.posteriorMeanCoefXt, ct, abs: 1e-15, "\(name): posteriorMeanCoefXt", file: file, line: line)
        // Invariants named explicitly: t = 0 has zero posterior variance and mean x_0 exactly.
        XCTAssertEqual(s.posteriorVariance[0], 0, "\(name): β̃_0 = 0", file: file, line: line)
        XCTAssertEqual(s.posteriorMeanCoefXt[0], 0, "\(name): ct_0 = 0", file: file, line: line)
        XCTAssertEqual(s.posteriorMeanCoefX0[0], 1, accuracy: 1e-12, "\(name): c0_0 = 1", file: file, line: line)
        XCTAssertTrue(s.posteriorLogVarianceClipped.allSatisfy { $0.isFinite }, "\(name): clipped log variance finite",
                      file: file, line: line)
        // ᾱ is strictly decreasing and in (0, 1).
        for t in 0..<T {
            XCTAssertTrue(s.alphaBar[t] > 0 && s.alphaBar[t] < 1, "\(name): ᾱ_\(t) in (0, 1)", file: file, line: line)
            if t > 0 { XCTAssertLessThan(s.alphaBar[t], s.alphaBar[t - 1], "\(name): ᾱ decreasing at \(t)", file: file, line: line) }
        }
    }

    // MARK: - Linear

    func testLinearSchedule() throws {
        let s = try NoiseSchedule.linear(steps: 1000, betaStart: 1e-4, betaEnd: 0.02)
        XCTAssertEqual(s.kind, .linear(betaStart: 1e-4, betaEnd: 0.02))
        let betas = (0..<1000).map { 1e-4 + (0.02 - 1e-4) * Double($0) / 999 }
        assertRelClose(s.betas, betas, rel: 1e-14, "linear betas")
        XCTAssertEqual(s.betas.first!, 1e-4, accuracy: 1e-18)
        XCTAssertEqual(s.betas.last!, 0.02, accuracy: 1e-16)
        checkDerivedTables(s, "linear T=1000")
        // numpy: b = np.linspace(1e-4, 0.02, 1000); ab = np.cumprod(1 - b)
        let ref: [(Double, Double, String)] = [
            (s.alphaBar[0], 0.9999, "ᾱ_0"),
            (s.alphaBar[499], 0.07858724288177824, "ᾱ_499"),
            (s.alphaBar[999], 4.035829765375676e-05, "ᾱ_999"),
            (s.posteriorVariance[1], 5.4531876613021935e-05, "β̃_1"),
            (s.posteriorVariance[999], 0.01999998352656061, "β̃_999"),
        ]
        for (got, want, what) in ref {
            XCTAssertEqual(got, want, accuracy: 1e-12 * abs(want), "linear \(what): \(got) vs numpy \(want)")
        }
    }

    func testLinearScaledToSteps() throws {
        let s = try NoiseSchedule.linear(steps: 200, scaleToSteps: true)
        XCTAssertEqual(s.kind, .linear(betaStart: 5e-4, betaEnd: 0.1))
        XCTAssertEqual(s.betas.first!, 5e-4, accuracy: 1e-17)
        XCTAssertEqual(s.betas.last!, 0.1, accuracy: 1e-15)
        checkDerivedTables(s, "linear T=200 scaled")
    }

    // MARK: - Cosine

    func testCosineSchedule() throws {
        let T = 1000, offset = 0.008
        let s = try NoiseSchedule.cosine(steps: T, offset: offset, maxBeta: 0.999)
        XCTAssertEqual(s.kind, .cosine(offset: 0.008, maxBeta: 0.999))
        func f(_ t: Double) -> Double { pow(cos((t / Double(T) + offset) / (1 + offset) * Double.pi / 2), 2) }
        // Where β is not clipped, ᾱ_t telescopes to f(t+1)/f(0) (code index t = paper's t+1).
        let clipped = (0..<T).filter { 1 - f(Double($0 + 1)) / f(Double($0)) >= 0.999 }
        XCTAssertEqual(clipped, [999], "only the last β hits the 0.999 clip")
        let unclipped = 0..<(clipped.first ?? T)
        assertRelClose(unclipped.map { s.alphaBar[$0] }, unclipped.map { f(Double($0 + 1)) / f(0) }, rel: 1e-11,
                       "cosine ᾱ_t vs f(t+1)/f(0)")
        XCTAssertTrue(s.betas.allSatisfy { $0 <= 0.999 }, "β ≤ 0.999")
        XCTAssertEqual(s.betas[999], 0.999, "clipped β_999")
        checkDerivedTables(s, "cosine T=1000")
        // numpy: bc = [min(1 - f(t+1)/f(t), 0.999)], abc = np.cumprod(1 - bc)
        let ref: [(Double, Double, String)] = [
            (s.betas[0], 4.128422482196914e-05, "β_0"),
            (s.alphaBar[0], 0.999958715775178, "ᾱ_0"),
            (s.alphaBar[500], 0.49228517244880304, "ᾱ_500"),
            (s.alphaBar[998], 2.4287669070348544e-06, "ᾱ_998"),
            (s.alphaBar[999], 2.4287669070348567e-09, "ᾱ_999"),
        ]
        for (got, want, what) in ref {
            XCTAssertEqual(got, want, accuracy: 1e-9 * abs(want), "cosine \(what): \(got) vs numpy \(want)")
        }
    }

    /// With a lower clip many late β are clipped, and ᾱ still equals the product of (1 − β).
    func testCosineClipping() throws {
        let s = try NoiseSchedule.cosine(steps: 50, maxBeta: 0.2)
        XCTAssertTrue(s.betas.allSatisfy { $0 <= 0.2 })
        XCTAssertGreaterThan(s.betas.filter { $0 == 0.2 }.count, 1, "several β clipped")
        checkDerivedTables(s, "cosine T=50 maxBeta 0.2")
    }

    // MARK: - Sigmoid

    func testSigmoidSchedule() throws {
        let s = try NoiseSchedule.sigmoid(steps: 100, betaMin: 0, betaMax: 0.1, start: -6, end: 6)
        XCTAssertEqual(s.kind, .sigmoid(betaMin: 0, betaMax: 0.1, start: -6, end: 6))
        let betas = (0..<100).map { t -> Double in
            let x = -6 + 12 * Double(t) / 99
            return 0.1 / (1 + exp(-x))
        }
        assertRelClose(s.betas, betas, rel: 1e-13, "sigmoid betas")
        checkDerivedTables(s, "sigmoid T=100")
        // numpy: x = np.linspace(-6, 6, 100); b = 0.1/(1+np.exp(-x)); ab = np.cumprod(1-b)
        let ref: [(Double, Double, String)] = [
            (s.betas[0], 0.00024726231566347745, "β_0"),
            (s.betas[99], 0.09975273768433654, "β_99"),
            (s.alphaBar[49], 0.5610459613888534, "ᾱ_49"),
            (s.alphaBar[99], 0.005394107885851031, "ᾱ_99"),
        ]
        for (got, want, what) in ref {
            XCTAssertEqual(got, want, accuracy: 1e-12 * abs(want), "sigmoid \(what): \(got) vs numpy \(want)")
        }
    }

    // MARK: - Custom

    /// β = (0.1, 0.2, 0.5): every table worked out by hand.
    func testCustomScheduleByHand() throws {
        let s = try NoiseSchedule(betas: [0.1, 0.2, 0.5])
        XCTAssertEqual(s.kind, .custom)
        checkDerivedTables(s, "custom")
        assertRelClose(s.alphaBar, [0.9, 0.72, 0.36], rel: 1e-15, "ᾱ by hand")
        assertRelClose(s.alphaBarPrev, [1, 0.9, 0.72], rel: 1e-15, "ᾱ_prev by hand")
        assertClose(s.posteriorVariance, [0, 0.1 / 0.28 * 0.2, 0.28 / 0.64 * 0.5], abs: 1e-15, "β̃ by hand")
        assertClose(s.posteriorMeanCoefX0, [1, sqrt(0.9) * 0.2 / 0.28, sqrt(0.72) * 0.5 / 0.64], abs: 1e-15, "c0 by hand")
        assertClose(s.posteriorMeanCoefXt, [0, sqrt(0.8) * 0.1 / 0.28, sqrt(0.5) * 0.28 / 0.64], abs: 1e-15, "ct by hand")
        assertClose(s.posteriorLogVarianceClipped, [log(0.2 / 2.8), log(0.2 / 2.8), log(0.21875)], abs: 1e-14,
                    "clipped log β̃ by hand")
        assertClose(s.sqrtRecipAlpha, [1 / sqrt(0.9), 1 / sqrt(0.8), 1 / sqrt(0.5)], abs: 1e-15, "1/√α by hand")
    }

    // MARK: - Edge cases

    /// T = 1: one step; β̃_0 = 0, the clipped log falls back to log β_0.
    func testSingleStepSchedules() throws {
        let linear = try NoiseSchedule.linear(steps: 1)
        XCTAssertEqual(linear.betas, [1e-4])
        XCTAssertEqual(linear.alphaBarPrev, [1])
        XCTAssertEqual(linear.posteriorVariance, [0])
        XCTAssertEqual(linear.posteriorLogVarianceClipped[0], log(1e-4), accuracy: 1e-12)
        checkDerivedTables(linear, "linear T=1")
        let cosine = try NoiseSchedule.cosine(steps: 1)
        XCTAssertEqual(cosine.betas, [0.999], "f(1) = cos²(π/2) ≈ 0, so β_0 is clipped")
        checkDerivedTables(cosine, "cosine T=1")
        let sigmoid = try NoiseSchedule.sigmoid(steps: 1)
        XCTAssertEqual(sigmoid.betas[0], 0.1 / (1 + exp(6.0)), accuracy: 1e-17)
        checkDerivedTables(sigmoid, "sigmoid T=1")
        XCTAssertEqual(try linear.timesteps(1), [0])
    }

    /// t = T−1 and t = 0 are valid timesteps; −1 and T are not.
    func testTimestepRange() throws {
        let s = try NoiseSchedule.linear(steps: 10, betaStart: 0.01, betaEnd: 0.2)
        XCTAssertNoThrow(try s.check(t: 0))
        XCTAssertNoThrow(try s.check(t: 9))
        assertInvalidArgument("t = -1") { try s.check(t: -1) }
        assertInvalidArgument("t = T") { try s.check(t: 10) }
    }

    // MARK: - Validation

    func testInvalidBetasThrow() {
        assertInvalidArgument("T = 0 (custom)") { try NoiseSchedule(betas: []) }
        assertInvalidArgument("β = 0") { try NoiseSchedule(betas: [0.1, 0]) }
        assertInvalidArgument("β = 1") { try NoiseSchedule(betas: [1]) }
        assertInvalidArgument("β > 1") { try NoiseSchedule(betas: [0.5, 1.5]) }
        assertInvalidArgument("β < 0") { try NoiseSchedule(betas: [-0.1]) }
        assertInvalidArgument("β NaN") { try NoiseSchedule(betas: [0.1, .nan, 0.2]) }
        assertInvalidArgument("β inf") { try NoiseSchedule(betas: [.infinity]) }
        assertInvalidArgument("linear T = 0") { try NoiseSchedule.linear(steps: 0) }
        assertInvalidArgument("linear T < 0") { try NoiseSchedule.linear(steps: -3) }
        assertInvalidArgument("linear β_start = 0") { try NoiseSchedule.linear(steps: 10, betaStart: 0) }
        assertInvalidArgument("linear β_end = 1") { try NoiseSchedule.linear(steps: 10, betaEnd: 1) }
        assertInvalidArgument("linear NaN") { try NoiseSchedule.linear(steps: 10, betaEnd: .nan) }
        assertInvalidArgument("linear scaled to T = 10 pushes β past 1") { try NoiseSchedule.linear(steps: 10, scaleToSteps: true) }
        assertInvalidArgument("cosine T = 0") { try NoiseSchedule.cosine(steps: 0) }
        assertInvalidArgument("cosine maxBeta = 1") { try NoiseSchedule.cosine(maxBeta: 1) }
        assertInvalidArgument("cosine negative offset") { try NoiseSchedule.cosine(offset: -0.1) }
        assertInvalidArgument("cosine NaN offset") { try NoiseSchedule.cosine(offset: .nan) }
        assertInvalidArgument("sigmoid T = 0") { try NoiseSchedule.sigmoid(steps: 0) }
        assertInvalidArgument("sigmoid NaN range") { try NoiseSchedule.sigmoid(start: .nan) }
        assertInvalidArgument("sigmoid β_max = 1.5") { try NoiseSchedule.sigmoid(betaMax: 1.5) }
    }
}
