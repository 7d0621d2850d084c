// swift-tools-version:6.0
import PackageDescription

let root = Context.packageDirectory

let package = Package(
    name: "aiges-swift-wrapper",
    products: [
        .library(name: "wrapper", type: .dynamic, targets: ["AigesWrapper"]),
        .executable(name: "aiges-harness", targets: ["aiges-harness"]),
        .executable(name: "aiges-worker", targets: ["aiges-worker"]),
        .executable(name: "aiges-faults", targets: ["aiges-faults"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2")
    ],
    targets: [
        .systemLibrary(
            name: "CPython", path: "Sources/CPython", pkgConfig: "python3-embed",
            providers: [.apt(["libpython3-dev"])]),
        .systemLibrary(name: "AigesABI", path: "include"),
        .target(name: "CPythonShims", dependencies: ["CPython"]),
        .target(
            name: "AigesBridge",
            dependencies: ["CPython", "CPythonShims", "AigesABI", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "AigesWrapper", dependencies: ["AigesBridge", "AigesABI"],
            exclude: ["exports.map"],
            linkerSettings: [
                .unsafeFlags([
                    "-static-stdlib", "-Xlinker", "--version-script=\(root)/Sources/AigesWrapper/exports.map",
                ])
            ]),
        // A worker process (config `workers`): runs wrapper.py with the same bridge, shipped beside libwrapper.so.
        .executableTarget(
            name: "aiges-worker", dependencies: ["AigesBridge"],
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]),
        .testTarget(name: "PluginTests", path: "Tests/PluginTests"),
        // Loading libwrapper.so as the AIGES loader does, shared by the two C tools below.
        .target(
            name: "AigesLoader", cSettings: [.headerSearchPath("../../include")],
            linkerSettings: [.linkedLibrary("dl")]),
        .executableTarget(
            name: "aiges-harness", dependencies: ["AigesABI", "AigesLoader"],
            cSettings: [.headerSearchPath("../../include")],
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
        // Adversarial scenarios against the plugin (Tests/PluginTests/HardeningTests.swift runs them).
        .executableTarget(
            name: "aiges-faults", dependencies: ["AigesLoader"], path: "Tests/Faults",
            cSettings: [.headerSearchPath("../../include")],
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread")]),
    ]
)
