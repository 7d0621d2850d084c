import Foundation
import Testing

/// The shared object itself and its behaviour under bad calls.
@Suite struct ABITests {
    static let entryPoints: Set<String> = [
        "wrapperSetCtrl", "wrapperInit", "wrapperFini", "wrapperError", "wrapperVersion", "wrapperLoadRes",
        "wrapperUnloadRes", "wrapperCreate", "wrapperWrite", "wrapperRead", "wrapperDestroy", "wrapperExec",
        "wrapperExecFree", "wrapperExecAsync", "wrapperDebugInfo",
    ]

    private func tool(_ name: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [name] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test func exportsExactlyTheFifteenEntryPoints() throws {
        // readelf --dyn-syms: "Num: Value Size Type Bind Vis Ndx Name"
        let table = try tool("readelf", ["--dyn-syms", "-W", Harness.library])
        let exported = table.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, fields[4] == "GLOBAL" || fields[4] == "WEAK", fields[6] != "UND" else {
                return nil
            }
            return String(fields[7])
        }
        #expect(Set(exported) == Self.entryPoints, "exported: \(exported.sorted())")
    }

    @Test func swiftRuntimeIsLinkedStatically() throws {
        let libraries = try tool("ldd", [Harness.library])
        #expect(!libraries.contains("libswift"), "\(libraries)")
        #expect(!libraries.contains("libFoundation"), "\(libraries)")
        #expect(libraries.contains("libpython3"), "\(libraries)")
    }

    @Test func probeFindsNoMisbehaviour() throws {
        // Calls before init, NULL respData, NULL data with len, NULL lists, double and foreign
        // wrapperExecFree, stable wrapperError text, unknown handles, 4 threads, calls after fini.
        let run = try Harness.run(["probe", "-c", "wrapper.file=\(Harness.example("echo"))"])
        #expect(run.status == 0, "\(run)")
        #expect(run.lines("FAIL").isEmpty, "\(run)")
        #expect(run.output.contains("probe: 0 failed"), "\(run)")
        for check in [
            "exec-before-init", "exec-null-respdata", "exec-null-data-nonzero-len", "exec-empty-head-nodes",
            "execfree-twice", "execfree-foreign-list", "error-text-stays-valid", "exec-4-threads",
            "exec-after-fini", "fini-twice", "session-read", "session-read-nothing-ready", "session-read-after-destroy",
            "session-write-after-destroy", "session-destroy-twice", "execasync-null-callback", "exec-cyclic-request",
            "exec-cyclic-params", "init-after-fini", "fini-after-reinit",
        ] {
            #expect(run.passed(check), "\(check) did not pass: \(run)")
        }
        #expect(run.output.contains("exec-null-data-nonzero-len -> 22003"), "\(run)")
        #expect(run.output.contains("exec-before-init -> 22001"), "\(run)")
    }

    /// Compiles the C sources in `directory` with clang -fsanitize=address into .build/asan/`name`.
    private func buildWithAddressSanitizer(_ directory: String, _ name: String) throws -> URL {
        let binary = Harness.root.appending(path: ".build/asan/\(name)")
        try FileManager.default.createDirectory(
            at: binary.deletingLastPathComponent(), withIntermediateDirectories: true)
        let sources = try FileManager.default.contentsOfDirectory(atPath: Harness.root.appending(path: directory).path)
            .filter { $0.hasSuffix(".c") }.sorted().map { "\(directory)/\($0)" }
        let compile = Process()
        compile.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        compile.arguments =
            ["clang", "-g", "-O1", "-fsanitize=address", "-fno-omit-frame-pointer", "-Iinclude"]
            + ["-ISources/AigesLoader/include", "Sources/AigesLoader/loader.c"]
            + sources + ["-o", binary.path, "-ldl", "-lpthread"]
        compile.currentDirectoryURL = Harness.root
        compile.standardError = FileHandle.nullDevice
        try compile.run()
        compile.waitUntilExit()
        try #require(compile.terminationStatus == 0, "clang -fsanitize=address of \(directory) failed")
        return binary
    }

    @Test func addressSanitizedHarnessRunsClean() throws {
        // The harness built with ASan: its own code is checked, and every malloc/free in the process
        // goes through ASan, so the plugin freeing (or double-freeing) loader memory would be reported.
        // (Reads from uninstrumented code — Python, numpy, the plugin — are not; the poisoning tests cover those.)
        let binary = try buildWithAddressSanitizer("Sources/aiges-harness", "aiges-harness")
        let scenarios = [
            ["probe", "-c", "wrapper.file=\(Harness.example("echo"))"],
            ["exec", "-c", "wrapper.file=\(Harness.fixture("keeps"))", "-i", "first=a", "-i", "second=b", "-n", "3"],
            [
                "session", "--push", "-c", "wrapper.file=\(Harness.example("streaming"))", "-s", "3", "-u", "-n", "3",
                "-i", "t=hello", "-i", "t=world",
            ],
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "8", "-n", "3", "-u", "-e", "-i",
                "a:audio=gen:4K",
            ],
        ]
        for scenario in scenarios {
            let run = try Harness.run(scenario, executable: binary, environment: ["ASAN_OPTIONS": "detect_leaks=0"])
            #expect(run.status == 0, "\(scenario[0]): \(run)")
            #expect(!run.errors.contains("AddressSanitizer"), "\(scenario[0]): \(run)")
        }
        // Input memory wrapper.py keeps past the call (HardeningTests' kept-views case), each input
        // poisoned and freed through ASan after its call: what was kept is still call 1's bytes.
        for (input, first) in [
            ("kept-payload", Data("kept-payload#0-0".utf8)), ("gen:1M", harnessPattern(1 << 20) + Data("#0-0".utf8)),
        ] {
            let directory = try Harness.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let run = try Harness.run(
                [
                    "exec", "-c", "wrapper.file=\(Harness.fixture("kept_views"))", "-o", directory.path, "-i",
                    "data=\(input)", "-n", "3", "-u",
                ], executable: binary, environment: ["ASAN_OPTIONS": "detect_leaks=0"])
            #expect(run.status == 0, "kept_views \(input): \(run)")
            #expect(run.output.contains("exec: 3 requests, 0 failed"), "kept_views \(input): \(run)")
            #expect(!run.errors.contains("AddressSanitizer"), "kept_views \(input): \(run)")
            for key in ["kept_view", "kept_memoryview", "kept_bytes", "kept_node_data", "kept_node_view"] {
                let kept = try? Data(contentsOf: directory.appending(path: key))
                #expect(kept == first, "kept_views \(input): \(key) is call 1's input")
            }
        }
    }

    @Test func addressSanitizedFaultsDriverRunsClean() throws {
        // The adversarial driver built with ASan, on the scenarios that call back into the plugin from
        // inside loader callbacks (destroy, debug info, bad calls, nested requests, wrapperFini),
        // long-lists (100,000-node and cyclic lists, freed node by node), lend-pull (data.lend: a read
        // after the input was freed through ASan, so output lent from it is a heap-use-after-free in the
        // driver) and read-many (a 20,000-node read): the driver's lists, tags and copies of callback
        // output are all checked, and any free by the plugin of driver memory goes through ASan.
        // (scripts/stress.sh runs `stress` under ASan too.)
        let binary = try buildWithAddressSanitizer("Tests/Faults", "aiges-faults")
        let scenarios = [
            "push-destroy-in-callback", "push-destroy-in-callback-thread", "push-debuginfo-in-callback",
            "bad-calls-in-callback", "async-callback-calls-plugin", "fini-from-callback", "fini-from-callback-push",
            "long-lists", "lend-pull", "read-many",
        ]
        for scenario in scenarios {
            let run = try Harness.run(
                [scenario, "-c", "wrapper.file=\(Harness.fixture("faults"))"], executable: binary,
                environment: ["ASAN_OPTIONS": "detect_leaks=0"], timeout: 90)
            #expect(run.status == 0, "\(scenario): \(run)")
            #expect(run.passed(scenario), "\(scenario): \(run)")
            #expect(!run.errors.contains("AddressSanitizer"), "\(scenario): \(run)")
        }
    }

    @Test func callsBeforeInitFailWithNotInitialised() throws {
        let run = try Harness.run(["exec", "--no-init", "-i", "x=y"])
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperExec returned 22001: plugin not initialised"), "\(run)")
    }

    @Test func harnessRejectsALibraryMissingSymbols() throws {
        // Any shared object without the fifteen symbols is refused, as the loader refuses it.
        let run = try Harness.run(["exec"], library: "/lib/x86_64-linux-gnu/libz.so.1")
        #expect(run.status == 3, "\(run)")
        #expect(run.errors.contains("does not export wrapperInit"), "\(run)")
    }
}
