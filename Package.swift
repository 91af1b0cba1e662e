// swift-tools-version: 6.0
import PackageDescription

#if os(macOS)
let blasLink: [LinkerSetting] = [.linkedFramework("Accelerate")]
#else
let blasLink: [LinkerSetting] = []
#endif

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
        .target(name: "DDPM", dependencies: ["CBLAS", "DDPMVersion"], swiftSettings: optimize, linkerSettings: blasLink),
        // include/ddpm.h as a Swift module, so the exports match the header's types.
        .systemLibrary(name: "CDDPM", path: "include"),
        .target(name: "DDPMC", dependencies: ["DDPM", "CDDPM"], swiftSettings: optimize),
        .testTarget(name: "DDPMTests", dependencies: ["DDPM"], exclude: ["Fixtures"]),
    ]
)
