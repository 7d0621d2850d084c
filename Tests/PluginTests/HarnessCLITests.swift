import Foundation
import Testing

/// aiges-harness's own command line: strict options, -r values, exec's throughput line, --stats, probe on any wrapper.
@Suite struct HarnessCLITests {
    @Test(
        "a bad command line is one line on stderr and exit status 2",
        arguments: [
            (["--pers", "abc"], #"aiges-harness: --pers: "abc" is not a whole number from 0 to 4294967295"#),
            (["-n", "1x"], #"aiges-harness: -n: "1x" is not a whole number from 1 to 2147483647"#),
            (["--repeat", ""], #"aiges-harness: --repeat: "" is not a whole number from 1 to 2147483647"#),
            (["-t", "0"], #"aiges-harness: -t: "0" is not a whole number from 1 to 256"#),
            (["--timeout-ms", "-1"], #"aiges-harness: --timeout-ms: "-1" is not a whole number from 0 to 2147483647"#),
            (["--poll-ms", "x"], #"aiges-harness: --poll-ms: "x" is not a whole number from 0 to 2147483647"#),
            (["-s", " 2"], #"aiges-harness: -s: " 2" is not a whole number from 1 to 2147483647"#),
            (["-i", "a=gen:1Q"], "aiges-harness: -i: \"gen:1Q\": SIZE is not a whole number of bytes"),
            (["-r", "7:p=@/nonexistent/voice.bin"], #"aiges-harness: -r: cannot read "/nonexistent/voice.bin""#),
            (["-r", "seven:p=x"], #"aiges-harness: -r: "seven" is not a whole number from 0 to 4294967295"#),
            (["-c", "novalue"], #"aiges-harness: -c: "novalue" is not KEY=VALUE"#),
            (["--bogus"], "aiges-harness: unknown option --bogus"),
            (["-n"], "aiges-harness: -n needs a value"),
            (["frobnicate"], #"aiges-harness: unknown mode "frobnicate""#),
        ])
    func badCommandLine(arguments: [String], message: String) throws {
        let config = ["-c", "wrapper.file=\(Harness.example("echo"))"]
        let run = try Harness.run(arguments.first?.hasPrefix("-") == false ? arguments + config : config + arguments)
        #expect(run.status == 2, "\(run)")
        #expect(run.output.isEmpty, "\(run)")
        let lines = run.errors.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].hasPrefix(message), "\(run)")
    }

    @Test func helpPrintsTheUsage() throws {
        let run = try Harness.run(["--help"])
        #expect(run.status == 0)
        #expect(run.output.hasPrefix("usage: aiges-harness"), "\(run)")
    }

    @Test func resourcesTakeTheInputValueSyntax() throws {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let voice = directory.appending(path: "voice.bin")
        try Data("a voice profile from a file\n".utf8).write(to: voice)
        let (run, outputs) = try Harness.exec(
            Harness.fixture("personal"), ["-r", "7:patch-7=@\(voice.path)", "-r", "8=plain text", "--pers", "7"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("wrapperLoadRes(7, patch_id=patch-7) returned 0"), "\(run)")
        #expect(run.output.contains("wrapperLoadRes(8) returned 0"), "no patch_id: the id as text: \(run)")
        let state = try #require(
            outputs["state"].flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] })
        #expect(
            state["resources"] as? [String: String] == [
                "patch-7": "a voice profile from a file\n", "8": "plain text",
            ], "\(state)")
    }

    @Test func execPrintsThroughputAndLatencyPercentiles() throws {
        let run = try Harness.run(
            ["exec", "-c", "wrapper.file=\(Harness.example("echo"))", "-i", "text=hi", "-n", "50", "-t", "2", "-q"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("exec: 100 requests, 0 failed (rss "), "the summary line stays: \(run)")
        let line = try #require(run.lines("exec throughput: ").first, "\(run)")
        #expect(line.contains(" requests/s (100 in "), "\(line)")
        for percentile in ["p50 ", "p90 ", "p99 "] { #expect(line.contains(percentile), "\(line)") }
    }

    @Test("--stats prints the plugin's snapshot before wrapperFini", arguments: ["exec", "session", "async", "probe"])
    func statsPrintsTheSnapshot(mode: String) throws {
        let run = try Harness.run([mode, "--stats", "-c", "wrapper.file=\(Harness.example("echo"))", "-i", "text=x"])
        #expect(run.status == 0, "\(run)")
        let lines = run.lines("stats: ")
        try #require(lines.count == 1, "\(run)")
        let json = Data(lines[0].dropFirst("stats: ".count).utf8)
        let snapshot = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any], "\(run)")
        #expect(snapshot["running"] as? Bool == true, "taken before wrapperFini: \(lines[0])")
    }

    @Test func probeWorksWithAWrapperThatDoesNotEcho() throws {
        for wrapper in [Harness.fixture("minimal"), Harness.example("streaming")] {
            let run = try Harness.run(["probe", "-c", "wrapper.file=\(wrapper)"])
            #expect(run.status == 0, "\(run)")
            #expect(run.lines("FAIL").isEmpty, "\(run)")
            #expect(run.output.contains("wrapper.py does not echo its input"), "\(run)")
            #expect(run.lines("skip exec-echo: ").count == 1, "\(run)")
            #expect(run.output.contains("probe: 0 failed, "), "\(run)")
            for check in ["exec-null-respdata", "exec-cyclic-request", "execfree-foreign-list", "exec-4-threads", "fini"] {
                #expect(run.passed(check), "\(check): \(run)")
            }
        }
        let echo = try Harness.run(["probe", "-c", "wrapper.file=\(Harness.example("echo"))"])
        #expect(echo.output.contains("probe: 0 failed, 0 skipped"), "\(echo)")
    }
}
