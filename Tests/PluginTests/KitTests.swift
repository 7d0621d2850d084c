import Foundation
import Testing

/// The local runner, `python3 -m aiges_embed run` (python/aiges_embed), run from the repository with
/// PYTHONPATH=python (no install), against the plugin's own behaviour through dist/.
enum LocalRunner {
    /// Debian's Python: the one the plugin embeds.
    static let python = URL(fileURLWithPath: "/usr/bin/python3")

    /// Runs `python3 -m aiges_embed ARGUMENTS` from the package root.
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Harness.Run {
        try Harness.run(
            ["-m", "aiges_embed"] + arguments, library: nil, executable: python,
            environment: environment.merging(["PYTHONPATH": Harness.root.appending(path: "python").path]) { $1 },
            timeout: 60)
    }

    /// Runs `run WRAPPER ARGUMENTS -o DIR` and returns the run and the output files it wrote.
    static func outputs(_ wrapper: String, _ arguments: [String]) throws -> (Harness.Run, [String: Data]) {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try run(["run", wrapper, "-o", directory.path] + arguments)
        return (run, try files(in: directory))
    }

    /// The files in `directory` by name.
    static func files(in directory: URL) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] {
            files[name] = try Data(contentsOf: directory.appending(path: name))
        }
        return files
    }
}

@Suite struct KitTests {
    @Test func runnerServesTheEchoExample() throws {
        let (run, outputs) = try LocalRunner.outputs(
            Harness.example("echo"), ["-i", "text=hello", "-i", "payload:audio=gen:4K", "-p", "sid=kit-1"])
        #expect(run.status == 0, "\(run)")
        #expect(run.lines("request 0: ok").count == 1, "\(run)")
        #expect(run.output.contains(#"  output[0] key=text type=0 status=3 len=5 data="hello""#), "\(run)")
        #expect(run.output.contains("  output[1] key=payload type=1 status=3 len=4096 "), "\(run)")
        #expect(run.output.hasSuffix("exec: 1 requests, 0 failed\n"), "\(run)")
        #expect(outputs["text"] == Data("hello".utf8))
        #expect(outputs["payload"] == harnessPattern(4096), "gen:SIZE makes the harness's bytes")
    }

    @Test func runnerRunsSessions() throws {
        let (run, outputs) = try LocalRunner.outputs(
            Harness.example("echo"), ["--session", "-i", "text=one ", "-i", "text=two"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("session 0: 2 results, 2 nodes, final yes"), "\(run)")
        #expect(outputs["text"] == Data("one two".utf8))
        let push = try LocalRunner.run([
            "run", Harness.example("streaming"), "--session", "--push", "-i", "text=hello ", "-i", "text=world",
        ])
        #expect(push.status == 0, "\(push)")
        #expect(push.output.contains(#"key=upper type=0 status=1 len=5 data="WORLD""#), "\(push)")
    }

    @Test func runnerReportsBrokenWrappersWithThePluginsCodes() throws {
        let broken = try LocalRunner.run(["run", Harness.fixture("broken_syntax")])
        #expect(broken.status == 1, "\(broken)")
        #expect(
            broken.output.contains(
                "wrapperInit: error 22002: wrapperInit failed (22002): cannot load \(Harness.fixture("broken_syntax")): "
                    + "SyntaxError: expected ':'"), "\(broken)")
        #expect(broken.errors.contains("Traceback"), "\(broken)")
        let raising = try LocalRunner.run(["run", Harness.fixture("behaviours"), "-p", "mode=raise", "-p", "sid=s-7"])
        #expect(raising.status == 1, "\(raising)")
        #expect(
            raising.output.contains(
                "request 0: error 22004: wrapper.py raised an exception (22004): Wrapper.wrapperOnceExec: "
                    + "ValueError: boom for s-7"), "\(raising)")
        #expect(raising.errors.contains(#"raise ValueError(f"boom for {params['sid']}")"#), "\(raising)")
    }

    @Test("bad command lines exit 2", arguments: [["run"], ["run", "w.py", "-i", "k:nosuchtype=x"], ["bogus"]])
    func badCommandLines(arguments: [String]) throws {
        let run = try LocalRunner.run(arguments)
        #expect(run.status == 2, "\(run)")
        #expect(run.errors.contains("usage: python3 -m aiges_embed"), "\(run)")
    }

    @Test func helpExplainsTheRunner() throws {
        let run = try LocalRunner.run(["--help"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("python3 -m aiges_embed run wrapper.py"), "\(run)")
    }

    @Test func pluginAndRunnerAgreeOnTheEchoExample() throws {
        let inputs = [
            "-p", "sid=agree-1", "-i", "text=héllo \"quoted\" \\ back", "-i", "payload:audio=gen:3000",
            "-i", "image:image=gen:0", "-i", "custom:17=x",
        ]
        let (plugin, pluginFiles) = try Harness.exec(Harness.example("echo"), inputs)
        let (runner, runnerFiles) = try LocalRunner.outputs(Harness.example("echo"), inputs)
        #expect(plugin.status == 0, "\(plugin)")
        #expect(runner.status == 0, "\(runner)")
        let pluginLines = plugin.lines("  output[")
        #expect(pluginLines.count == 4, "\(plugin)")
        #expect(runner.lines("  output[") == pluginLines, "plugin:\n\(plugin)\nrunner:\n\(runner)")
        #expect(runnerFiles == pluginFiles)
    }

    @Test func pluginAndRunnerAgreeOnEchoSessions() throws {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let chunks = ["-i", "text=one ", "-i", "text=two ", "-i", "text=three"]
        let plugin = try Harness.run(
            ["session", "-c", "wrapper.file=\(Harness.example("echo"))", "-o", directory.path] + chunks)
        #expect(plugin.status == 0, "\(plugin)")
        let (runner, runnerFiles) = try LocalRunner.outputs(Harness.example("echo"), ["--session"] + chunks)
        #expect(runner.status == 0, "\(runner)")
        let pluginFiles = try LocalRunner.files(in: directory)
        #expect(pluginFiles["0.text"] == Data("one two three".utf8), "\(plugin)")
        #expect(runnerFiles["text"] == pluginFiles["0.text"], "\(runner)")
    }

    @Test(
        "plugin and runner refuse the same outputs with the same codes and texts",
        arguments: [
            "raise", "response_err", "wrong_type", "int_code", "empty", "bad_data", "len_too_big", "bad_key",
            "list_none", "list_int", "code_str", "nul_key", "len_prefix", "kinds",
        ])
    func pluginAndRunnerAgreeOnTheContract(mode: String) throws {
        let arguments = ["-p", "mode=\(mode)", "-p", "sid=s-1", "-i", "in=abc"]
        let (plugin, pluginFiles) = try Harness.exec(Harness.fixture("behaviours"), arguments)
        let (runner, runnerFiles) = try LocalRunner.outputs(Harness.fixture("behaviours"), arguments)
        #expect(runner.status == plugin.status, "plugin:\n\(plugin)\nrunner:\n\(runner)")
        // The harness prints "request 0.0: wrapperExec returned CODE: TEXT", the runner "request 0: error CODE: TEXT".
        let pluginErrors = plugin.lines("request 0.0: wrapperExec returned ").map {
            String($0.dropFirst("request 0.0: wrapperExec returned ".count))
        }
        let runnerErrors = runner.lines("request 0: error ").map { String($0.dropFirst("request 0: error ".count)) }
        #expect(plugin.status == 0 || !pluginErrors.isEmpty, "\(plugin)")
        #expect(runnerErrors == pluginErrors, "plugin:\n\(plugin)\nrunner:\n\(runner)")
        #expect(runner.lines("  output[") == plugin.lines("  output["), "plugin:\n\(plugin)\nrunner:\n\(runner)")
        #expect(runnerFiles == pluginFiles)
    }
}
