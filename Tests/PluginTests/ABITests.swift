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
