// swift-tools-version: 6.0
import PackageDescription

// The BLAS: Accelerate's CBLAS on macOS, OpenBLAS elsewhere (Sources/CBLAS/shim.h includes
// the matching header; its module map links nothing, so this is the one place it is linked).
let blasLink: [LinkerSetting] = [
    .linkedFramework("Accelerate", .when(platforms: [.macOS])),
    .linkedLibrary("openblas", .when(platforms: [.linux])),
]

// libddpm.so's SONAME carries the ABI major version, DDPM_VERSION_MAJOR of
// include/ddpm_version.h (`make install` checks they agree): libddpm.so.0.
let sonameLink: [LinkerSetting] = [
    .unsafeFlags(["-Xlinker", "-soname", "-Xlinker", "libddpm.so.0"], .when(platforms: [.linux])),
]

// -Ounchecked for the engine's kernels only: a UNet train step (bench/alloc_count.c, 1 thread)
// was about 7% slower with -O, the MLP step no different (on a loaded machine; issue 10). Every
// size the engine computes is bounded before it is multiplied (Core/Limits.swift), so no
// overflow depends on Swift's checks. The C layer, which reads every caller's argument and
// size, keeps the checks of a plain -O build.
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "SwiftDDPM",
    products: [
        // libddpm.so: the C ABI described by include/ddpm.h.
        .library(name: "ddpm", type: .dynamic, targets: ["DDPMC"]),
        // The engine, for Swift callers.
        .library(name: "DDPM", targets: ["DDPM"]),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // include/ddpm_version.h, the one source of the version, for the engine.
        .systemLibrary(name: "DDPMVersion", path: "Sources/DDPMVersion"),
        // The hot loops in C, one build per ISA path chosen at run time (Sources/DDPMKernels/isa.h);
        // no -march: the library runs on any x86-64. Contraction off: a multiply-add is fused only
        // where a kernel says so, the same on every path, so every path gives the same bits.
        .target(name: "DDPMKernels", path: "Sources/DDPMKernels",
                cSettings: [.unsafeFlags(["-O3", "-ffp-contract=off", "-fno-math-errno"])]),
        .target(name: "DDPM", dependencies: ["CBLAS", "DDPMVersion", "DDPMKernels"], swiftSettings: optimize,
                linkerSettings: blasLink),
        // include/ddpm.h as a Swift module, so the exports match the header's types.
        .systemLibrary(name: "CDDPM", path: "include"),
        .target(name: "DDPMC", dependencies: ["DDPM", "CDDPM"], linkerSettings: sonameLink),  // -O: checks kept
        .testTarget(name: "DDPMTests", dependencies: ["DDPM"], exclude: ["Fixtures"]),
    ]
)
