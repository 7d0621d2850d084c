import Foundation
import Testing

/// Finding and loading wrapper.py, and what a broken one does to wrapperInit.
@Suite struct LoadingTests {
    @Test(
        "a broken wrapper.py fails wrapperInit with the file and the Python error",
        arguments: [
            ("broken_syntax", "SyntaxError"),
            ("broken_import", "ModuleNotFoundError: No module named 'module_that_does_not_exist_anywhere'"),
            ("broken_init", "RuntimeError: model file missing: /models/none.bin"),
            ("no_class", "defines no class 'Wrapper'"),
        ])
    func brokenWrapperFailsInit(fixture: String, error: String) throws {
        let path = Harness.fixture(fixture)
        let (run, _) = try Harness.exec(path, ["-i", "x=y"])
        #expect(run.status == 1, "\(run)")
        let line = try #require(run.lines("wrapperInit failed: 22002").first, "\(run)")
        #expect(line.contains(path), "names the file: \(line)")
        #expect(line.contains(error), "\(line)")
    }

    @Test func missingFileFailsInit() throws {
        let (run, _) = try Harness.exec("/nonexistent/dir/wrapper.py", ["-i", "x=y"])
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperInit failed: 22002"), "\(run)")
        #expect(run.output.contains("/nonexistent/dir/wrapper.py cannot be read"), "\(run)")
    }

    @Test func noWrapperAnywhereSaysWhereItLooked() throws {
        let empty = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: empty) }
        let run = try Harness.run(["exec", "-i", "x=y"], in: empty)
        #expect(run.status == 1)
        #expect(run.output.contains("wrapper.py not found"), "\(run)")
        #expect(run.output.contains(empty.path), "\(run)")
    }

    @Test func initCodeFromWrapperIsReturnedWithItsText() throws {
        let (run, _) = try Harness.exec(Harness.fixture("init_code"))
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperInit failed: 4321: licence check failed (4321)"), "\(run)")
    }

    @Test func wrapperPyInTheWorkingDirectory() throws {
        let directory = URL(fileURLWithPath: Harness.fixture("minimal")).deletingLastPathComponent()
        let run = try Harness.run(["exec", "-i", "a=1", "-i", "b=2"], in: directory)
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("key=count type=0 status=3 len=1 data=\"2\""), "\(run)")
    }

    @Test func wrapperPyBesideTheLibrary() throws {
        // Plugin, harness and wrapper.py in one folder; run from an unrelated working directory.
        let folder = try Harness.temporaryDirectory()
        let elsewhere = try Harness.temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(at: folder)
            try? FileManager.default.removeItem(at: elsewhere)
        }
        for name in ["libwrapper.so", "aiges-harness"] {
            try FileManager.default.copyItem(at: Harness.dist.appending(path: name), to: folder.appending(path: name))
        }
        try FileManager.default.copyItem(
            at: URL(fileURLWithPath: Harness.fixture("minimal")), to: folder.appending(path: "wrapper.py"))
        let run = try Harness.run(
            ["exec", "-i", "only=1"], library: nil, executable: folder.appending(path: "aiges-harness"), in: elsewhere)
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("key=count type=0 status=3 len=1 data=\"1\""), "\(run)")
    }

    @Test func wrapperClassConfigKey() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("custom_class"), config: ["wrapper.class=Custom"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["who"] == Data("custom class".utf8))
    }

    @Test func wrapperWithoutOptionalMethodsLoadsAndUnsupportedCallsFailCleanly() throws {
        // minimal/wrapper.py has only wrapperOnceExec; probe's session and personalisation checks
        // expect clean error codes, and its echo checks fail (it counts nodes instead of echoing).
        let run = try Harness.run(["probe", "-c", "wrapper.file=\(Harness.fixture("minimal"))"])
        #expect(run.output.contains("create-fails-cleanly"), "\(run)")
        #expect(run.output.contains("22006"), "methodMissing for wrapperCreate: \(run)")
        for check in [
            "init", "create-fails-cleanly", "write-unknown-handle", "read-unknown-handle",
            "destroy-null-handle", "unloadres-unknown", "fini", "exec-after-fini",
        ] {
            #expect(run.passed(check), "\(check): \(run)")
        }
    }

    @Test func pythonPathEnvironmentIsHonoured() throws {
        let modules = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: modules) }
        try "VALUE = b'from PYTHONPATH'\n".write(
            to: modules.appending(path: "extra_module.py"), atomically: true, encoding: .utf8)
        let wrapper = modules.appending(path: "uses_extra.py")
        try """
        import extra_module
        from aiges_embed import Response, ResponseData

        class Wrapper:
            def wrapperOnceExec(self, params, reqData):
                out = ResponseData()
                out.key = "value"
                out.setData(extra_module.VALUE)
                return Response(list=[out])
        """.write(to: wrapper, atomically: true, encoding: .utf8)
        // The wrapper's own folder is on sys.path too, so import from a separate PYTHONPATH folder.
        let elsewhere = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        try FileManager.default.moveItem(at: wrapper, to: elsewhere.appending(path: "uses_extra.py"))
        let run = try Harness.run(
            ["exec", "-c", "wrapper.file=\(elsewhere.appending(path: "uses_extra.py").path)"],
            environment: ["PYTHONPATH": modules.path])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("data=\"from PYTHONPATH\""), "\(run)")
    }
}
