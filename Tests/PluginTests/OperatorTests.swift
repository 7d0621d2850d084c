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
            ("python.executable=/usr/bin", "config python.executable = \"/usr/bin\": not an executable file"),
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
        #expect(
            run.errors.contains("config async.timeout is not a key this plugin reads; did you mean async.timeout_ms?"))
        #expect(run.errors.contains("did you mean metrics.interval_s?"), "\(run)")
        #expect(!run.errors.contains("common.lic"), "keys outside the plugin's namespaces are wrapper.py's: \(run)")
        #expect(run.errors.contains("config log.level = \"loud\" is not a level"), "\(run)")
    }

    @Test func valuesRealConfigsUseAreAccepted() throws {
        // log.level=off (iflytek's own wrappers use it) logs nothing; log.max_mb=0 is taken as 1.
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (run, _) = try Harness.exec(
            Harness.example("echo"), ["-i", "a=b"],
            config: ["log.level=off", "log.max_mb=0", "log.dir=\(directory.path)", "data.copy=false", "gil.gate_us=50"])
        #expect(run.status == 0, "\(run)")
        #expect(run.errors.isEmpty, "log.level=off: \(run.errors)")
        // An unknown level's warning reaches the log file too.
        let (loud, _) = try Harness.exec(
            Harness.example("echo"), ["-i", "a=b"], config: ["log.level=loud", "log.dir=\(directory.path)"])
        #expect(loud.status == 0, "\(loud)")
        let log = try String(contentsOf: directory.appending(path: "wrapper.log"), encoding: .utf8)
        #expect(log.contains("config log.level = \"loud\" is not a level"), "\(log)")
    }

    @Test func asyncOutcomesAreLoggedAndCountedPerRequest() throws {
        // A timeout (the plugin's code) is logged at error with the request's sid, and counted under
        // asyncResult by its ret, with the time from wrapperExecAsync's entry to the callback.
        let run = try Harness.run(
            [
                "async", "-c", "wrapper.file=\(Harness.example("async"))", "-t", "2", "-n", "2", "-q",
                "-p", "delay_ms=400", "-p", "sid=slow-sid", "--timeout-ms", "100", "--expect-ret", "22012",
                "-i", "a:audio=gen:1K", "--wait-ms", "3000",
            ])
        #expect(run.status == 0, "\(run)")
        let lines = run.errors.split(separator: "\n").filter { $0.contains(": 22012 (timeout)") }
        #expect(lines.count == 4, "\(run)")
        #expect(lines.allSatisfy { $0.contains(" ERROR ") && $0.contains("[sid slow-sid]") }, "\(lines)")
        let state = try #require(run.lines("state: ").first, "\(run)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(state.dropFirst("state: ".count).utf8)) as? [String: Any])
        let result = try #require(
            (json["entry_points"] as? [String: Any])?["asyncResult"] as? [String: Any], "\(state)")
        #expect((result["codes"] as? [String: Int])?["22012"] == 4, "\(state)")
        #expect((result["p50_us"] as? Double ?? 0) >= 100_000, "from entry to the callback: \(state)")
        #expect(json["async_timed_out"] as? Int == 4)
    }

    @Test func manyDistinctCodesKeepTheSnapshotValidJSON() throws {
        // wrapper.py may return any int: past 32 distinct codes the rest count as "other".
        let run = try Harness.run(
            [
                "exec", "-c", "wrapper.file=\(Harness.fixture("behaviours"))", "-p", "mode=varying_code", "-n", "400",
                "-q", "--stats",
            ])
        let stats = try #require(run.lines("stats: ").first, "\(run)")
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(stats.dropFirst("stats: ".count).utf8)) as? [String: Any],
            "\(stats)")
        let exec = try #require((json["entry_points"] as? [String: Any])?["wrapperExec"] as? [String: Any])
        let codes = try #require(exec["codes"] as? [String: Int])
        #expect(codes.count <= 33 && codes["other"] == 400 - 32, "\(codes)")
    }

    @Test func metricsFileIsRewrittenPeriodicallyAndAfterFini() throws {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appending(path: "aiges.prom").path
        let harness = Harness.dist.appending(path: "aiges-harness").path
        // 6 requests 600 ms apart; the file is read at 2.5 s, while the harness still runs.
        let run = try Harness.run(
            [
                "-c",
                """
                "\(harness)" exec --so "\(Harness.library)" -c wrapper.file="\(Harness.example("echo"))" \
                    -c metrics.file="\(file)" -c metrics.interval_s=1 -i a=b -n 6 --read-delay-ms 600 -q --stats &
                sleep 2.5; cp "\(file)" "\(file).during"; wait $!
                """,
            ], library: nil, executable: URL(fileURLWithPath: "/bin/bash"))
        #expect(run.status == 0, "\(run)")
        let during = try String(contentsOfFile: file + ".during", encoding: .utf8)
        let calls = during.split(separator: "\n").first {
            $0.hasPrefix("aiges_wrapper_calls_total{entry=\"wrapperExec\",code=\"0\"}")
        }
        let count = calls.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect((1...5).contains(count), "rewritten while running: \(calls ?? "none")")
        let final = try String(contentsOfFile: file, encoding: .utf8)
        #expect(final.contains("aiges_wrapper_calls_total{entry=\"wrapperExec\",code=\"0\"} 6"), "\(final)")
        #expect(
            final.contains("aiges_wrapper_calls_total{entry=\"wrapperFini\",code=\"0\"} 1"),
            "written after fini: \(final)")
        #expect(final.contains("aiges_wrapper_in_flight{entry=\"wrapperFini\"} 0"))
        #expect(final.contains("aiges_wrapper_timers 0"), "the file's own timer is not an async timeout")
        // Histograms: cumulative buckets ending in +Inf, which equals _count.
        let buckets = final.split(separator: "\n").filter {
            $0.hasPrefix("aiges_wrapper_call_duration_seconds_bucket{entry=\"wrapperExec\"")
        }
        let counts = buckets.compactMap { Int($0.split(separator: " ").last ?? "") }
        #expect(counts == counts.sorted() && buckets.last?.contains("le=\"+Inf\"") == true, "\(buckets)")
        #expect(final.contains("aiges_wrapper_call_duration_seconds_count{entry=\"wrapperExec\"} \(counts.last ?? -1)"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter {
            $0.hasPrefix(".aiges-metrics")
        }
        #expect(leftovers.isEmpty, "\(leftovers)")
        let stats = try #require(run.lines("stats: ").first, "\(run)")
        #expect(stats.contains("\"timers\": 0"), "\(stats)")
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
        let plugin = try Harness.exec(
            Harness.fixture("behaviours"), ["-p", "mode=wrong_type", "-p", "sid=sid-plugin-2"])
        let pluginLines = plugin.run.errors.split(separator: "\n").filter { $0.contains("wrapperExec returned 22005") }
        #expect(pluginLines.count == 1, "\(plugin.run)")
        #expect(
            pluginLines.first?.contains("ERROR") == true && pluginLines.first?.contains("[sid sid-plugin-2]") == true)
    }

    @Test(
        "Python logging records reach the log as log.level lets them through", arguments: ["debug", "info", "warning"])
    func pythonLoggingFollowsLogLevel(level: String) throws {
        let (run, _) = try Harness.exec(
            Harness.fixture("logging_levels"), ["-i", "a=b"], config: ["log.level=\(level)"])
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
            #expect(
                line.split(separator: " ").filter { $0.contains(":") && $0.contains("-") && $0.first?.isNumber == true }
                    .count == 1, "\(line)")
            #expect(line.contains("[python]") && line.contains("levels: "), "\(line)")
        }
        #expect(info.map { $0.contains(" INFO ") } ?? true, "\(run)")
    }

    @Test func moduleLevelLoggingKeepsItsLevelAndFormat() throws {
        // logging.info() with no handler configured would run basicConfig(): its stderr handler made every
        // record a WARNING line with Python's own prefix ("INFO:root:...").
        let (run, _) = try Harness.exec(Harness.fixture("module_logging"), ["-i", "a=b"], config: ["log.level=debug"])
        #expect(run.status == 0, "\(run)")
        let lines = run.errors.split(separator: "\n")
        let info = try #require(lines.first { $0.contains("a module-level info record") }, "\(run)")
        #expect(info.contains(" INFO ") && info.hasSuffix("[python] a module-level info record"), "\(info)")
        let debug = try #require(lines.first { $0.contains("a module-level debug record") }, "\(run)")
        #expect(debug.contains(" DEBUG "), "\(debug)")
        let named = try #require(lines.first { $0.contains("a named info record") }, "\(run)")
        #expect(named.contains(" INFO ") && named.hasSuffix("[python] named: a named info record"), "\(named)")
        #expect(!run.errors.contains("INFO:root:"), "\(run)")
    }

    @Test func misspelledEntryPointsAreNamedAtLoad() throws {
        let (run, _) = try Harness.exec(Harness.fixture("misspelled"), ["-i", "a=b"])
        #expect(run.output.contains("wrapperExec returned 22006"), "the misspelled method is not called: \(run)")
        #expect(
            run.errors.contains(
                "Wrapper.wrapperOnceExce is not an entry point the plugin calls; did you mean wrapperOnceExec?"))
        #expect(
            run.errors.contains(
                "Wrapper.wrapperWriteData is not an entry point the plugin calls; did you mean wrapperWrite?"))
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
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter {
            $0.contains(".tmp")
        }
        #expect(leftovers.isEmpty, "\(leftovers)")
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.hasPrefix("aiges_wrapper_"), "\(line)")
        }
    }
}
