import Foundation
import Testing

/// A virtual environment with the PyPI `aiges` SDK, built once (pip, PyPI only) and reused.
/// The SDK and every dependency are pinned in Tests/aiges-sdk-requirements.txt (wheels only): each run
/// gets the same packages, and a venv built from other pins is rebuilt.
enum SDKVenv {
    static let directory = Harness.root.appending(path: ".build/aiges-sdk-venv")
    static let requirements = Harness.root.appending(path: "Tests/aiges-sdk-requirements.txt")

    /// The venv, or why it could not be built.
    static let built: Result<URL, Failure> = {
        // .ready holds the requirements the venv was built from.
        let ready = directory.appending(path: ".ready")
        guard let pins = try? Data(contentsOf: requirements) else {
            return .failure(Failure(text: "cannot read \(requirements.path)"))
        }
        if (try? Data(contentsOf: ready)) == pins { return .success(directory) }
        try? FileManager.default.removeItem(at: directory)
        let steps = [
            ["/usr/bin/python3", "-m", "venv", directory.path],
            [
                directory.appending(path: "bin/pip").path, "install", "-q", "--disable-pip-version-check",
                "--only-binary", ":all:", "-r", requirements.path,
            ],
        ]
        for step in steps {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: step[0])
            process.arguments = Array(step.dropFirst())
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            do { try process.run() } catch { return .failure(Failure(text: "\(step): \(error)")) }
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            if process.terminationStatus != 0 {
                return .failure(Failure(text: "\(step.joined(separator: " ")):\n\(text)"))
            }
        }
        _ = FileManager.default.createFile(atPath: ready.path, contents: pins)
        return .success(directory)
    }()

    struct Failure: Error, CustomStringConvertible {
        let text: String
        var description: String { text }
    }
}

/// Real wrapper.py files: SDK wrappers, virtual environments, every signature generation, logs.
@Suite struct EnvironmentTests {
    private func logFile(_ directory: URL) -> String {
        (try? String(contentsOf: directory.appending(path: "wrapper.log"), encoding: .utf8)) ?? ""
    }

    @Test func sdkWrapperServesOneShotRequests() throws {
        let venv = try SDKVenv.built.get()
        let logs = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: logs) }
        let run = try Harness.run(
            [
                "exec", "-c", "wrapper.file=wrapper.py", "-c", "python.venv=\(venv.path)", "-c", "log.dir=\(logs.path)",
                "-p", "lang=en", "-p", "sid=sdk-1", "-i", "text=rain and wind, then a train",
            ],
            in: Harness.root.appending(path: "examples/sdk"))
        #expect(run.status == 0, "\(run)")
        #expect(
            run.output.contains(
                #"{\x22lang\x22: \x22en\x22, \x22keywords\x22: {\x22weather\x22: [\x22rain\x22, \x22wind\x22]"#),
            "\(run)")
        let log = logFile(logs)
        #expect(log.contains("INFO [tid "), "\(log)")
        #expect(log.contains("Initializing keyword spotter"), "log.info reaches the log: \(log)")
        #expect(log.contains("[sid sdk-1] [python]") && log.contains("spotting keywords in 27 characters"), "\(log)")
        #expect(
            log.contains("Current Using Python: \(venv.path)/bin/python"), "sys.executable is the venv's python: \(log)"
        )
    }

    @Test func sdkWrapperServesSessions() throws {
        let venv = try SDKVenv.built.get()
        let run = try Harness.run(
            [
                "session", "-c", "wrapper.file=wrapper.py", "-c", "python.venv=\(venv.path)", "-i", "text=tea or ",
                "-i", "text=rice in the snow",
            ], in: Harness.root.appending(path: "examples/sdk"))
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("session: 1 sessions, 0 failed"), "\(run)")
        #expect(run.output.contains("final yes"), "\(run)")
    }

    /// A venv made without pip (no network) holding one package the system Python lacks.
    private func venvWithOwnPackage() throws -> URL {
        let venv = try Harness.temporaryDirectory().appending(path: "venv")
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        make.arguments = ["-m", "venv", "--without-pip", venv.path]
        try make.run()
        make.waitUntilExit()
        let package = venv.appending(path: "lib/python3.11/site-packages/venv_only_package")
        try FileManager.default.createDirectory(at: package, withIntermediateDirectories: true)
        try "GREETING = 'hello from the venv'\n".write(
            to: package.appending(path: "__init__.py"), atomically: true, encoding: .utf8)
        return venv
    }

    @Test func venvOnlyPackagesImportWithPythonVenv() throws {
        let venv = try venvWithOwnPackage()
        defer { try? FileManager.default.removeItem(at: venv.deletingLastPathComponent()) }
        let (run, outputs) = try Harness.exec(Harness.fixture("venv_user"), config: ["python.venv=\(venv.path)"])
        #expect(run.status == 0, "\(run)")
        let found = String(decoding: outputs["found"] ?? Data(), as: UTF8.self)
        #expect(found == "hello from the venv \(venv.path)/bin/python \(venv.path)", "\(run)")
        let (without, _) = try Harness.exec(Harness.fixture("venv_user"))
        #expect(without.output.contains("wrapperInit failed: 22002"), "\(without)")
        #expect(without.output.contains("No module named 'venv_only_package'"), "\(without)")
    }

    @Test func pythonPathAddsSearchPathEntries() throws {
        let venv = try venvWithOwnPackage()
        defer { try? FileManager.default.removeItem(at: venv.deletingLastPathComponent()) }
        let site = venv.appending(path: "lib/python3.11/site-packages").path
        let (run, outputs) = try Harness.exec(
            Harness.fixture("venv_user"), config: ["python.path=/nonexistent:\(site)"])
        #expect(run.status == 0, "\(run)")
        #expect(
            String(decoding: outputs["found"] ?? Data(), as: UTF8.self).hasPrefix(
                "hello from the venv /usr/bin/python3"))
    }

    @Test func aDirectoryThatIsNotAVenvOfThisPythonIsRefused() throws {
        let empty = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: empty) }
        let (run, _) = try Harness.exec(Harness.fixture("minimal"), config: ["python.venv=\(empty.path)"])
        #expect(run.status == 1)
        #expect(run.output.contains("must be a venv of the Python this plugin embeds (3.11)"), "\(run)")
    }

    @Test func multiprocessingAndSubprocessWork() throws {
        // Spawned workers need a real sys.executable and must import wrapper.py, which imports aiges_embed.
        let (run, outputs) = try Harness.exec(Harness.fixture("spawns"))
        #expect(run.status == 0, "\(run)")
        #expect(outputs["result"] == Data("[4, 9, 16] 42 /usr/bin/python3.11".utf8), "\(run)")
    }

    @Test("aiges_embed is never published in a folder another user can write", arguments: ["open", "foreign", "own"])
    func embedModuleFolderIsPrivate(kind: String) throws {
        // $TMPDIR/aiges-embed-<uid> made first by someone else (or left writable by all) must not end up
        // on sys.path: whoever can write it could plant modules there.
        let temporary = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: temporary) }
        let shared = temporary.appending(path: "aiges-embed-\(getuid())")
        if kind != "own" {
            try FileManager.default.createDirectory(at: shared, withIntermediateDirectories: false)
            chmod(shared.path, kind == "open" ? 0o777 : 0o755)
            if kind == "foreign" {
                guard getuid() == 0, chown(shared.path, 65534, 65534) == 0 else { return }  // needs root
            }
        }
        let (run, outputs) = try Harness.exec(
            Harness.fixture("embed_paths"), ["-i", "a=x"], environment: ["TMPDIR": temporary.path])
        #expect(run.status == 0, "\(run)")
        let paths = String(decoding: outputs["paths"] ?? Data(), as: UTF8.self)
        #expect(!paths.isEmpty, "aiges_embed is published somewhere: \(run)")
        if kind == "own" {
            #expect(paths.hasPrefix(shared.path + "/"), "\(paths)")
            var info = stat()
            #expect(stat(shared.path, &info) == 0 && info.st_mode & 0o077 == 0, "the folder is private")
        } else {
            #expect(!paths.contains(shared.path + "/"), "published under the untrusted \(shared.path): \(paths)")
            #expect(run.errors.contains("is not a private folder of this user"), "\(run)")
        }
    }

    @Test func oldestSignatureFormsGetWhatTheyAskFor() throws {
        let wrapper = Harness.fixture("old_signatures")
        let once = try Harness.exec(wrapper, ["-i", "a=x", "-p", "sid=s-9"])
        #expect(
            once.outputs["once"].map { String(decoding: $0, as: UTF8.self) }
                == #"{"sid": "s-9", "usrTag": "tag-0-0", "keys": ["a"]}"#, "\(once.run)")
        let session = try Harness.run(["session", "-c", "wrapper.file=\(wrapper)", "-i", "a=one", "-i", "a=two"])
        #expect(session.status == 0, "\(session)")
        #expect(session.output.contains(#""handle": "h-sid-0-0", "sid": "sid-0-0", "writes": [["h-sid"#), "\(session)")
        let async = try Harness.run(["async", "-c", "wrapper.file=\(wrapper)", "-i", "a=x"])
        #expect(async.status == 0, "\(async)")
        #expect(
            async.output.contains(#"async: 20 bytes "{"third": "sid-0-0"}""#), "the third argument is the sid: \(async)"
        )
    }

    @Test func varArgsMethodsGetTheNewestForm() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("varargs"), ["--pers", "9"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["count"] == Data("4 tag-0-0 9".utf8))
    }

    @Test func descGoesInAndComesOut() throws {
        let (run, _) = try Harness.exec(Harness.fixture("desc_echo"), ["-i", "a=x", "-d", "a.rate=16000"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("desc.rate=16000 desc.echoed=yes desc.frames=3"), "\(run)")
    }

    @Test func aFailingRequestLogsItsTracebackWithItsSid() throws {
        let logs = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: logs) }
        let (run, _) = try Harness.exec(
            Harness.fixture("chatty"), ["-p", "sid=s-fail", "-p", "fail=1", "-i", "a=x"],
            config: ["log.dir=\(logs.path)"])
        #expect(run.status == 1)
        let log = logFile(logs)
        #expect(log.contains("ERROR [tid "), "\(log)")
        #expect(log.contains("[sid s-fail] Wrapper.wrapperOnceExec: KeyError: 'no model for s-fail'"), "\(log)")
        #expect(log.contains("Traceback (most recent call last)") && log.contains("in broken"), "\(log)")
        #expect(log.contains("[sid s-fail] [python] printing for s-fail"), "print is not lost: \(log)")
        #expect(log.contains("[sid s-fail] [python] chatty: warning for s-fail"), "logging is not lost: \(log)")
        #expect(log.components(separatedBy: "Traceback (most recent call last)").count == 2, "logged once: \(log)")
    }

    @Test func anUnwritableLogDirectoryFallsBackToStderr() throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("chatty"), ["-i", "a=served"], config: ["log.dir=/proc/aiges-cannot-be-here"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["ok"] == Data("served".utf8))
        #expect(run.errors.contains("logging to stderr only: cannot create /proc/aiges-cannot-be-here"), "\(run)")
        #expect(run.errors.contains("[python] printing for harness-0-0"), "\(run)")
    }

    @Test func debugLogsSizesAndTimingsNeverPayloads() throws {
        let logs = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: logs) }
        let (run, _) = try Harness.exec(
            Harness.example("echo"), ["-i", "secret=SECRET-PAYLOAD-123", "-p", "sid=dbg"],
            config: ["log.dir=\(logs.path)", "log.level=debug"])
        #expect(run.status == 0, "\(run)")
        let log = logFile(logs)
        #expect(log.contains("DEBUG [tid "), "\(log)")
        #expect(log.contains("[sid dbg] wrapperExec: 18 bytes in, 1 nodes / 18 bytes out in "), "\(log)")
        #expect(!log.contains("SECRET-PAYLOAD"), "\(log)")
    }

    @Test func theLogFileRotatesBySize() throws {
        let logs = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: logs) }
        let (run, _) = try Harness.exec(
            Harness.fixture("chatty"), ["-i", "a=x", "-n", "8000", "-q"],
            config: ["log.dir=\(logs.path)", "log.max_mb=1", "log.backups=2"])
        #expect(run.status == 0, "\(run)")
        let files = try FileManager.default.contentsOfDirectory(atPath: logs.path).sorted()
        #expect(files.contains("wrapper.log") && files.contains("wrapper.log.1"), "\(files)")
        #expect(!files.contains("wrapper.log.3"), "\(files)")
        let size = try FileManager.default.attributesOfItem(atPath: logs.appending(path: "wrapper.log").path)[.size]
        #expect((size as? Int ?? 0) <= 1 << 20)
    }
}
