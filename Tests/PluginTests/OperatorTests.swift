import Foundation
import Testing

/// What the operator is told: checked config, one log line per failed result, metrics.
@Suite struct OperatorTests {
    @Test(
        "a bad value for a key the plugin reads fails wrapperInit with the key and value",
        arguments: [
            ("log.max_mb=abc", "config log.max_mb = \"abc\": expected a whole number"),
            ("log.backups=-1", "config log.backups = \"-1\""),
            ("gil.gate_us=-5", "config gil.gate_us = \"-5\""),
            ("data.copy=maybe", "config data.copy = \"maybe\": expected true or false"),
            ("log.capture_python=sometimes", "config log.capture_python = \"sometimes\""),
            ("async.timeout_ms=abc", "config async.timeout_ms = \"abc\""),
            ("async.fallback_threads=0", "config async.fallback_threads = \"0\""),
            ("metrics.interval_s=0", "config metrics.interval_s = \"0\""),
            ("python.executable=/nonexistent/python3", "config python.executable = \"/nonexistent/python3\""),
            ("metrics.file=/nonexistent-dir/m.prom", "config metrics.file = \"/nonexistent-dir/m.prom\""),
        ])
    func badValuesAreRefused(setting: String, text: String) throws {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (run, _) = try Harness.exec(
            Harness.example("echo"), ["-i", "a=b"], config: [setting, "log.dir=\(directory.path)"])
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("wrapperInit failed: 22002"), "\(run)")
        #expect(run.output.contains(text), "\(run)")
        let log = try String(contentsOf: directory.appending(path: "wrapper.log"), encoding: .utf8)
        #expect(log.contains("ERROR") && log.contains("wrapperInit returned 22002") && log.contains(text), "\(log)")
    }

    @Test func unknownKeysInThePluginsNamespacesGetTheNearestKey() throws {
        let (run, _) = try Harness.exec(
            Harness.example("echo"), ["-i", "a=b"],
            config: ["wrapper.fiel=x", "async.timeout=5", "metrics.intervals=3", "common.lic=10", "log.level=loud"])
        #expect(run.status == 0, "\(run)")
        #expect(run.errors.contains("config wrapper.fiel is not a key this plugin reads; did you mean wrapper.file?"))
        #expect(run.errors.contains("config async.timeout is not a key this plugin reads; did you mean async.timeout_ms?"))
        #expect(run.errors.contains("did you mean metrics.interval_s?"), "\(run)")
        #expect(!run.errors.contains("common.lic"), "keys outside the plugin's namespaces are wrapper.py's: \(run)")
        #expect(run.errors.contains("config log.level = \"loud\" is not a level"), "\(run)")
    }

    @Test func aMissingWrapperFileReachesTheLogFile() throws {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (run, _) = try Harness.exec("/nonexistent/wrapper.py", [], config: ["log.dir=\(directory.path)"])
        #expect(run.status == 1, "\(run)")
        let log = try String(contentsOf: directory.appending(path: "wrapper.log"), encoding: .utf8)
        #expect(log.contains("wrapperInit returned 22002 (initFailed): wrapper.file /nonexistent/wrapper.py"), "\(log)")
    }

    @Test func everyNonZeroResultIsLoggedOnceWithItsSid() throws {
        // wrapper.py's own code at warning, the plugin's at error, each with the request's sid.
        let own = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=response_err", "-p", "sid=sid-own-1"])
        let ownLines = own.run.errors.split(separator: "\n").filter { $0.contains("returned wrapper.py's code 100") }
        #expect(ownLines.count == 1, "\(own.run)")
        #expect(ownLines.first?.contains("WARNING") == true && ownLines.first?.contains("[sid sid-own-1]") == true)
        let plugin = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=wrong_type", "-p", "sid=sid-plugin-2"])
        let pluginLines = plugin.run.errors.split(separator: "\n").filter { $0.contains("wrapperExec returned 22005") }
        #expect(pluginLines.count == 1, "\(plugin.run)")
        #expect(pluginLines.first?.contains("ERROR") == true && pluginLines.first?.contains("[sid sid-plugin-2]") == true)
    }

    @Test("Python logging records reach the log as log.level lets them through", arguments: ["debug", "info", "warning"])
    func pythonLoggingFollowsLogLevel(level: String) throws {
        let (run, _) = try Harness.exec(Harness.fixture("logging_levels"), ["-i", "a=b"], config: ["log.level=\(level)"])
        #expect(run.status == 0, "\(run)")
        let lines = run.errors.split(separator: "\n")
        let debug = lines.first { $0.contains("a debug record") }
        let info = lines.first { $0.contains("an info record") }
        let warning = lines.first { $0.contains("a warning record") }
        #expect((debug != nil) == (level == "debug"), "\(run)")
        #expect((info != nil) == (level != "warning"), "\(run)")
        #expect(warning != nil, "\(run)")
        for line in [debug, info, warning].compactMap({ $0 }) {
            // One timestamp (the plugin's): wrapper.py's basicConfig format loses its %(asctime)s.
            #expect(line.split(separator: " ").filter { $0.contains(":") && $0.contains("-") && $0.first?.isNumber == true }.count == 1, "\(line)")
            #expect(line.contains("[python]") && line.contains("levels: "), "\(line)")
        }
        #expect(info.map { $0.contains(" INFO ") } ?? true, "\(run)")
    }

    @Test func misspelledEntryPointsAreNamedAtLoad() throws {
        let (run, _) = try Harness.exec(Harness.fixture("misspelled"), ["-i", "a=b"])
        #expect(run.output.contains("wrapperExec returned 22006"), "the misspelled method is not called: \(run)")
        #expect(run.errors.contains("Wrapper.wrapperOnceExce is not an entry point the plugin calls; did you mean wrapperOnceExec?"))
        #expect(run.errors.contains("Wrapper.wrapperWriteData is not an entry point the plugin calls; did you mean wrapperWrite?"))
        let none = try Harness.exec(Harness.fixture("no_entry"), ["-i", "a=b"])
        #expect(none.run.output.contains("wrapperInit failed: 22002"), "\(none.run)")
        #expect(none.run.output.contains("defines none of wrapperOnceExec, wrapperOnceExecAsync, wrapperCreate"))
    }

    @Test func metricsAreJSONAndAPrometheusTextFile() throws {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appending(path: "aiges.prom")
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "4", "-n", "5", "-u", "-e", "-q",
                "-i", "a:audio=gen:1K", "-c", "metrics.file=\(file.path)", "-c", "metrics.interval_s=1",
            ])
        #expect(run.status == 0, "\(run)")
        let state = try #require(run.lines("state: ").first, "\(run)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(state.dropFirst("state: ".count).utf8)) as? [String: Any])
        let entries = try #require(json["entry_points"] as? [String: Any])
        let async = try #require(entries["wrapperExecAsync"] as? [String: Any], "\(state)")
        #expect(async["calls"] as? Int == 20)
        #expect((async["codes"] as? [String: Int])?["0"] == 20)
        #expect(async["p99_us"] != nil && async["in_flight"] as? Int == 0)
        #expect(json["callbacks_delivered"] as? Int == 20)
        // Written at wrapperFini too, atomically (no temporary file left behind).
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.contains("# HELP aiges_wrapper_calls_total "), "\(text)")
        #expect(text.contains("# TYPE aiges_wrapper_call_duration_seconds histogram"))
        #expect(text.contains("aiges_wrapper_calls_total{entry=\"wrapperExecAsync\",code=\"0\"} 20"), "\(text)")
        #expect(text.contains("aiges_wrapper_callbacks_delivered_total 20"), "\(text)")
        #expect(text.contains("aiges_wrapper_sessions_open 0"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.hasPrefix("aiges_wrapper_"), "\(line)")
        }
    }
}
