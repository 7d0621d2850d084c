import Foundation
import Testing

/// One-shot requests through wrapperExec / wrapperExecFree, end to end through dist/libwrapper.so.
@Suite struct OneShotTests {
    @Test("echo is exact", arguments: [0, 1, 1024, 1 << 20, 16 << 20])
    func echoIsExact(size: Int) throws {
        let (run, outputs) = try Harness.exec(Harness.example("echo"), ["-i", "payload:audio=gen:\(size)", "-e"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["payload"] == harnessPattern(size))
        #expect(run.output.contains("output[0] key=payload type=1 status=3 len=\(size) "), "\(run)")
    }

    @Test func paramsConfigAndNodesReachPython() throws {
        let (run, outputs) = try Harness.exec(
            Harness.fixture("inspect"),
            [
                "-p", "sid=req-42", "-p", "appid=demo", "-i", "text:text=héllo", "-i", "img:image=@/dev/null",
                "-d", "text.encoding=utf8", "-d", "text.frame_id=7",
            ],
            config: ["common.lic=10", "log.level=debug", "custom.key=value with = sign"])
        #expect(run.status == 0, "\(run)")
        let info = try #require(
            outputs["info"].flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] })
        let config = try #require(info["config"] as? [String: String])
        #expect(config["common.lic"] == "10")
        #expect(config["custom.key"] == "value with = sign")
        #expect(config["wrapper.file"] == Harness.fixture("inspect"))
        let params = try #require(info["params"] as? [String: String])
        #expect(params == ["sid": "req-42", "appid": "demo"])
        #expect(info["usrTag"] as? String == "tag-0-0")
        #expect(info["persId"] as? Int == 0)
        #expect(info["get_missing"] as? Bool == true)
        let nodes = try #require(info["nodes"] as? [[String: Any]])
        #expect(nodes.count == 2)
        #expect(nodes[0]["key"] as? String == "text")
        let latin1 = "héllo".utf8.map { String(UnicodeScalar($0)) }.joined()  // the fixture decodes bytes as latin-1
        #expect(nodes[0]["data"] as? String == latin1)
        #expect(nodes[0]["len"] as? Int == 6)
        #expect(nodes[0]["view_len"] as? Int == 6)
        #expect(nodes[0]["readonly"] as? Bool == true)
        #expect(nodes[0]["status"] as? Int == 3)
        #expect(nodes[0]["desc"] as? [String: String] == ["encoding": "utf8", "frame_id": "7"])
        #expect(nodes[1]["key"] as? String == "img")
        #expect(nodes[1]["type"] as? Int == 2)
        #expect(nodes[1]["len"] as? Int == 0)
    }

    @Test func sidIsAlwaysInParams() throws {
        // The harness always sends a sid; a wrapper reading params["sid"] must work either way.
        let (run, outputs) = try Harness.exec(Harness.fixture("two_args"), ["-i", "in=abc", "-p", "sid=s-1"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["result"] == Data("two-args:abc:s-1".utf8))
    }

    @Test func twoArgumentOnceExecAndListAssignment() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("two_args"), ["-i", "in=payload"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["result"] == Data("two-args:payload:harness-0-0".utf8))
    }

    @Test func emptyRequestReachesPython() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("minimal"))
        #expect(run.status == 0, "\(run)")
        #expect(outputs["count"] == Data("0".utf8))
    }

    @Test func pythonExceptionBecomesCodeWithMessage() throws {
        let (run, _) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=raise", "-p", "sid=sid-77"])
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperExec returned 22004"), "\(run)")
        #expect(run.output.contains("ValueError: boom for sid-77"), "\(run)")
        #expect(run.errors.contains("Traceback"), "the traceback is logged: \(run)")
    }

    @Test func responseErrReturnsWrapperCodeAndText() throws {
        let (run, _) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=response_err"])
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperExec returned 100: behaviours wrapper says 100"), "\(run)")
    }

    @Test func integerReturnIsTreatedAsErrorCode() throws {
        let (run, _) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=int_code"])
        #expect(run.output.contains("wrapperExec returned 7: behaviours wrapper says 7"), "\(run)")
    }

    @Test(
        "bad results are errors",
        arguments: [
            ("wrong_type", "22005", "expected a Response, got str"),
            ("empty", "22007", "list is empty"),
            ("bad_data", "22008", "data must be bytes-like or str, got int"),
            ("len_too_big", "22008", "len 10 is larger than its data (3 bytes)"),
            ("bad_key", "22008", "ResponseData.key must be a str"),
            ("list_none", "22005", "Response.list must be a list of ResponseData, got NoneType"),
            ("list_int", "22005", "Response.list must be a list of ResponseData, got int"),
            ("code_str", "22005", "Response.error_code must be an int"),
            ("nul_key", "22008", "contains a NUL character"),
        ])
    func badResultsAreErrors(mode: String, code: String, text: String) throws {
        let (run, _) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=\(mode)"])
        #expect(run.status == 1)
        #expect(run.output.contains("wrapperExec returned \(code)"), "\(run)")
        #expect(run.output.contains(text), "\(run)")
    }

    @Test("wrapper.py code that changes the output while the plugin reads it", arguments: ["list", "desc"])
    func outputChangedWhileReadIsSafe(what: String) throws {
        // A property that empties Response.list, a desc key whose str() clears the desc dict: the plugin
        // must own what it reads (debug malloc turns a read of freed memory into a crash).
        let run = try Harness.run(
            ["exec", "-c", "wrapper.file=\(Harness.fixture("behaviours"))", "-p", "mode=\(what)_mutated"],
            environment: ["PYTHONMALLOC": "debug"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains(what == "list" ? "key=k" : "desc.k=vvvv"), "\(run)")
    }

    @Test func setDataNoneIsAnEmptyNode() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=set_none"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["none"] == Data())
        #expect(outputs["after"] == Data("ok".utf8))
    }

    @Test func lenPast2GiBIsServed() throws {
        // len is an unsigned 32-bit field: 2 GiB + 5 is a legal length (calloc'd zeros, never touched
        // by the wrapper; the harness reads them).
        let (run, _) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=len_2gib"])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("len=2147483653"), "\(run)")
    }

    @Test func loneSurrogatesStayReadable() throws {
        let key = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=surrogate_key"])
        #expect(key.run.status == 0, "\(key.run)")
        #expect(key.run.output.contains("key=k\\udcff\\ud800 "), "\(key.run)")
        let raised = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=surrogate_raise"])
        #expect(raised.run.output.contains("wrapperExec returned 22004"), "\(raised.run)")
        #expect(raised.run.output.contains("ValueError: bad \\ud800 text"), "\(raised.run)")
    }

    @Test func errorTextsAreBounded() throws {
        // 300 distinct 200 KB exception texts: each wrapperError text is cut to 4 KiB, and memory stays flat.
        let run = try Harness.run(
            ["exec", "-c", "wrapper.file=\(Harness.fixture("behaviours"))", "-p", "mode=huge_raise", "-n", "300", "-q"])
        #expect(run.status == 1, "\(run)")
        #expect(run.output.contains("exec: 300 requests, 300 failed"), "\(run)")
        let growth = try #require(run.rssGrowthKiB, "\(run)")
        #expect(growth < 30_000, "RSS grew \(growth) KiB over 300 texts of 200 KB (60 MB if kept whole)")
        let longest = run.output.split(separator: "\n").map(\.utf8.count).max() ?? 0
        #expect(longest < 4400, "longest line \(longest) bytes")
        #expect(run.output.contains("… [cut]"), "\(run)")
    }

    @Test func sidPoppedFromParamsStaysTheRequestsSid() throws {
        // wrapper.py removes sid from params and frees it; the plugin's log must still name the sid.
        let (run, outputs) = try Harness.exec(
            Harness.fixture("behaviours"), ["-p", "mode=pop_sid", "-p", "sid=sid-popped-7"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["sid"] == Data("sid-popped-7".utf8))
        #expect(run.errors.contains("[sid sid-popped-7] [python] behaviours: after pop, expected sid sid-popped-7"), "\(run)")
    }

    @Test func writableOutputsAreCopiedWhenReturned() throws {
        // A wrapper thread changes its bytearray and numpy output 50 ms after returning them; the
        // loader must see what was returned. The harness reads outputs after a delay (--read-delay-ms).
        let (run, outputs) = try Harness.exec(
            Harness.fixture("behaviours"), ["-p", "mode=mutate_later", "--read-delay-ms", "200"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["bytearray"] == Data(repeating: 65, count: 4096))
        #expect(outputs["numpy"] == Data(repeating: 65, count: 4096))
    }

    @Test func lenSmallerThanDataTruncates() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=len_prefix"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["x"] == Data("abc".utf8))
    }

    @Test func everyBufferKindIsAcceptedAsOutput() throws {
        let (run, outputs) = try Harness.exec(Harness.fixture("behaviours"), ["-p", "mode=kinds"])
        #expect(run.status == 0, "\(run)")
        #expect(outputs["bytes"] == Data("bytes-data".utf8))
        #expect(outputs["bytearray"] == Data("bytearray-data".utf8))
        #expect(outputs["memoryview"] == Data("memoryview-data".utf8))
        #expect(outputs["str"] == Data("str-data-é".utf8))
        let numbers = (0..<1024).map { Int32($0) }
        #expect(outputs["numpy"] == numbers.withUnsafeBytes { Data($0) })
        let strided = stride(from: 0, to: 1024, by: 2).map { Int32($0) }
        #expect(outputs["strided"] == strided.withUnsafeBytes { Data($0) })
        #expect(outputs["none"] == Data())
    }

    @Test func numpyExampleRunsUnderLoaderStyleLoading() throws {
        // The harness dlopens with RTLD_NOW only; numpy's extension modules must still import.
        let (run, outputs) = try Harness.exec(
            Harness.example("numpy"), ["-i", "samples:audio=gen:64K", "-d", "samples.dtype=int16"])
        #expect(run.status == 0, "\(run)")
        let stats = try #require(
            outputs["stats"].flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Double] })
        #expect(stats["samples"] == 32768)
        let gain = try #require(stats["gain"])
        let peak = try #require(stats["peak"])
        #expect(abs(peak * gain - 1.0) < 1e-6)
        let normalised = try #require(outputs["normalised"])
        #expect(normalised.count == 32768 * 4)
        let floats = normalised.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(abs((floats.map { abs($0) }.max() ?? 0) - 1.0) < 1e-5)
        #expect(run.output.contains("desc.dtype=float32"), "\(run)")
    }

    @Test("request objects kept past the call own their bytes", arguments: [false, true])
    func requestObjectsKeptPastTheCallOwnTheirBytes(lend: Bool) throws {
        // Call 1 keeps the node, the request, the node list and a view; the harness then poisons and
        // frees its buffers. Call 2 must still read the original bytes. The kept view reads them too,
        // except with data.lend, where a view is the loader's memory and must raise instead.
        let (run, outputs) = try Harness.exec(
            Harness.fixture("keeps"), ["-i", "first=first-payload", "-i", "second=second-payload", "-n", "2"],
            config: lend ? ["data.lend=true"] : [])
        #expect(run.status == 0, "\(run)")
        let report = try #require(
            outputs["report"].flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] }, "\(run)")
        #expect(report["node"] as? String == "first-payload")
        #expect(report["node_view"] as? String == "first-payload")
        #expect(report["request"] as? String == "second-payload")
        #expect(report["items"] as? [String] == ["first-payload", "second-payload"])
        let stale = try #require(report["stale_view"] as? String)
        if lend {
            #expect(stale.hasPrefix("ValueError"), "a lent view kept past its call must raise: \(stale)")
        } else {
            #expect(stale == "first-payload", "a view kept past its call reads what it saw: \(stale)")
        }
    }

    @Test func fourThreadsGetTheirOwnResults() throws {
        let run = try Harness.run(
            [
                "exec", "-c", "wrapper.file=\(Harness.example("echo"))", "-t", "4", "-n", "250", "-u", "-e", "-q",
                "-i", "a=gen:4K", "-i", "b=text",
            ])
        #expect(run.status == 0, "\(run)")
        #expect(run.output.contains("exec: 1000 requests, 0 failed"), "\(run)")
    }
}
