"""The local runner: `python3 -m aiges_embed run` and aiges_embed.runner.Runner."""
import os
import subprocess
import sys
import time

import pytest

import aiges_embed
from aiges_embed.__main__ import main
from aiges_embed.runner import Node, PluginError, Runner, pattern

from conftest import PYTHON_DIR, REPO

ECHO = os.path.join(REPO, "examples", "echo", "wrapper.py")

# A wrapper whose behaviour each test picks with the request param "mode".
MODES = '''
import threading
from aiges_embed import Response, ResponseData, SessionCreateResponse, callback, callback_metric, callback_trace

def reply(key, data, status=3):
    out = ResponseData(key, 0, status)
    out.setData(data)
    return Response(list=[out])

class Wrapper:
    def wrapperInit(self, config):
        self.config = config
        return int(config.get("init_code", "0"))

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        mode = params.get("mode", "")
        if mode == "raise":
            raise ValueError("boom " + params["sid"])
        if mode == "hooks":
            codes = (callback_metric(usrTag, "calls", 2), callback_trace(usrTag, "stage", "exec"))
            return reply("codes", repr(codes))
        if mode == "code":
            return Response.response_err(42)
        node = reqData.get("in")
        return reply("seen", b"%s|%s|%d|%d|%s" % (params["sid"].encode(), usrTag.encode(), persId, node.type,
                                                  node.data if node else b"-"))

    def wrapperOnceExecAsync(self, params, reqData, usrTag, persId):
        mode = params.get("mode", "")
        if mode == "never":
            return 0
        if mode == "refuse":
            return 9
        if mode == "bad":
            threading.Thread(target=callback, args=(Response(), usrTag)).start()
            return 0
        tag = params["sid"] if mode == "by_sid" else usrTag
        data = reqData.list[0].data
        def later():
            self.codes = [callback(reply("async", data), tag), callback(reply("late", b"x"), tag),
                          callback(reply("x", b"x"), "nobody")]
        threading.Thread(target=later).start()
        return 0

    def wrapperCreate(self, params, sid, persId, usrTag):
        self.push = params.get("push") == "1"
        self.chunks = []
        return SessionCreateResponse(handle="h-" + sid)

    def wrapperWrite(self, handle, req):
        node = req.list[0]
        self.chunks.append((node.data, node.status))
        if node.data == b"fail":
            return 5
        if self.push:
            status = 2 if node.status == 2 else 1
            threading.Thread(target=callback, args=(reply("part", node.data, status), handle)).start()
        elif node.status == 2:
            # queued for the next read, which splits them at the repeated key
            callback(Response(list=[reply("a", b"1", 1).list[0], reply("a", b"2", 2).list[0]]), handle)
        return 0

    def wrapperRead(self, handle):
        if self.push:
            raise AssertionError("no reads in push mode")
        return reply("statuses", ",".join(str(s) for _, s in self.chunks), 1)

    def wrapperDestroy(self, handle):
        return 0

    def wrapperError(self, ret):
        return f"modes says {ret}"

    def wrapperFini(self):
        return int(self.config.get("fini_code", "0"))
'''


@pytest.fixture
def modes(write_wrapper):
    return write_wrapper(MODES)


def run(capsys, *argv):
    """main() with argv: (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


# ---- the command line ----


def test_echo_prints_like_the_harness(capsys):
    status, out, _ = run(capsys, "run", ECHO, "-i", "text=hello", "-i", "a:audio=gen:100")
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0] == "request 0: ok"
    assert lines[1] == '  output[0] key=text type=0 status=3 len=5 data="hello"'
    assert lines[2].startswith('  output[1] key=a type=1 status=3 len=100 data="cz\\xa0~\\xe1\\xea\\xf2=\\xc79m\\x0d')
    assert lines[2].endswith('"...')
    assert lines[-1] == "exec: 1 requests, 0 failed"


def test_gen_makes_the_harness_pattern():
    assert pattern(16) == b"cz\xa0~\xe1\xea\xf2=\xc79m\r\xa6x\x16\x80"
    assert pattern(0) == b"" and len(pattern(1 << 16)) == 1 << 16


def test_input_values_types_desc_and_out_dir(capsys, modes, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00file\xff")
    out_dir = tmp_path / "out"
    status, out, _ = run(
        capsys, "run", modes, "-i", f"in:image=@{source}", "-p", "sid=s-1", "--pers", "7", "-o", str(out_dir))
    assert status == 0, out
    assert (out_dir / "seen").read_bytes() == b"s-1|tag-0|7|2|\x00file\xff"
    status, out, _ = run(capsys, "run", modes, "-i", "in:12=gen:1K", "-o", str(out_dir))
    assert status == 0 and (out_dir / "seen").read_bytes() == b"run-0|tag-0|0|12|" + pattern(1024)
    status, out, _ = run(capsys, "run", ECHO, "-i", "k=text with = sign", "-d", "k.rate=16000", "-o", str(out_dir))
    assert status == 0 and (out_dir / "k").read_bytes() == b"text with = sign"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["run", ECHO, "-i", "novalue"],
        ["run", ECHO, "-i", "=x"],
        ["run", ECHO, "-i", "k:sound=x"],
        ["run", ECHO, "-i", "k=gen:12Q"],
        ["run", ECHO, "-i", "k=gen:5000M"],
        ["run", ECHO, "-i", "k=@/nonexistent/file"],
        ["run", ECHO, "-i", "k=x", "-d", "other.rate=1"],
        ["run", ECHO, "-i", "k=x", "-d", "k=1"],
        ["run", ECHO, "-c", "novalue"],
        ["run", ECHO, "-n", "0"],
        ["run", ECHO, "-n", "abc"],
        ["run", ECHO, "--push"],
        ["run", ECHO, "--session", "--async"],
        ["run", ECHO, "--unknown"],
    ],
)
def test_bad_command_lines_exit_2(capsys, argv):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert "usage:" in err


def test_help_explains_the_runner(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert "python3 -m aiges_embed run wrapper.py" in out and "gen:SIZE" in out and "exit status" in out


def test_a_failing_call_exits_1_with_code_text_and_traceback(capsys, modes):
    status, out, err = run(capsys, "run", modes, "-p", "mode=raise", "-p", "sid=s-9")
    assert status == 1
    assert "request 0: error 22004: wrapper.py raised an exception (22004): " \
           "Wrapper.wrapperOnceExec: ValueError: boom s-9" in out
    assert "Traceback (most recent call last)" in err and 'raise ValueError("boom "' in err
    assert "runner.py" not in err  # the traceback starts in wrapper.py
    assert out.splitlines()[-1] == "exec: 1 requests, 1 failed"


def test_wrapper_codes_get_the_wrappers_text(capsys, modes):
    status, out, _ = run(capsys, "run", modes, "-p", "mode=code")
    assert status == 1 and "request 0: error 42: modes says 42" in out
    status, out, _ = run(capsys, "run", modes, "-c", "init_code=3")
    assert status == 1 and "wrapperInit: error 3: modes says 3" in out
    status, out, _ = run(capsys, "run", modes, "-c", "fini_code=4", "-i", "in=x")
    assert status == 1 and "request 0: ok" in out and "wrapperFini: error 4: modes says 4" in out


def test_load_failures_are_22002(capsys, write_wrapper, tmp_path):
    status, out, _ = run(capsys, "run", str(tmp_path / "missing.py"))
    assert status == 1
    assert "wrapperInit: error 22002: wrapperInit failed (22002): wrapper.file " in out
    assert "cannot be read: No such file or directory" in out
    broken = write_wrapper("class Wrapper:\n    def wrapperInit(self, config)\n")
    status, out, err = run(capsys, "run", broken)
    assert status == 1 and f"cannot load {broken}: SyntaxError: expected ':'" in out and "SyntaxError" in err
    status, out, _ = run(capsys, "run", ECHO, "-c", "wrapper.class=Nope")
    assert status == 1 and "LookupError: wrapper.py defines no class 'Nope'" in out


def test_missing_methods_are_22006(capsys, write_wrapper):
    only_create = write_wrapper("class Wrapper:\n    def wrapperCreate(self, params, sid):\n        return sid\n")
    status, out, _ = run(capsys, "run", only_create)
    assert status == 1
    assert "error 22006: wrapper.py does not define this method (22006): " \
           "wrapper.py defines no Wrapper.wrapperOnceExec" in out
    only_exec = write_wrapper("class Wrapper:\n    def wrapperOnceExec(self, params, reqData):\n        return None\n")
    status, out, _ = run(capsys, "run", only_exec, "--session", "-i", "a=x")
    assert status == 1 and "defines no Wrapper.wrapperCreate" in out


def test_a_class_the_loader_cannot_call_fails_init(capsys, write_wrapper):
    only_init = write_wrapper("class Wrapper:\n    def wrapperInit(self, config):\n        return 0\n")
    status, out, _ = run(capsys, "run", only_init)
    assert status == 1 and "error 22002" in out and "defines none of wrapperOnceExec" in out


def test_contract_checks_apply(capsys, write_wrapper):
    wrapper = write_wrapper('''
        from aiges_embed import Response, ResponseData
        class Wrapper:
            def wrapperOnceExec(self, params, reqData):
                mode = params["mode"]
                if mode == "empty":
                    return Response()
                if mode == "type":
                    return "text"
                out = ResponseData("k")
                out.data = b"abc"
                out.len = 10
                return Response(list=[out])
    ''')
    for mode, line in [
        ("empty", "error 22007: wrapper.py returned an empty response list (22007)"),
        ("type", "error 22005: wrapper.py returned the wrong type (22005): expected a Response, got str"),
        ("len", 'error 22008: invalid output node (22008): "k": len 10 is larger than its data (3 bytes)'),
    ]:
        status, out, _ = run(capsys, "run", wrapper, "-p", f"mode={mode}")
        assert status == 1 and line in out, out


def test_arguments_by_parameter_name(capsys, write_wrapper, tmp_path):
    wrapper = write_wrapper('''
        from aiges_embed import Response, ResponseData
        class Wrapper:
            def wrapperOnceExec(self, param, req, sid, unknown=None):
                out = ResponseData("k")
                out.setData(f"{sorted(param)} {[n.key for n in req.list]} {sid} {unknown}")
                return Response(list=[out])
    ''')
    status, out, _ = run(capsys, "run", wrapper, "-p", "a=1", "-i", "x=1", "-o", str(tmp_path))
    assert status == 0, out
    assert (tmp_path / "k").read_text() == "['a', 'sid'] ['x'] run-0 None"


def test_repeat(capsys):
    status, out, _ = run(capsys, "run", ECHO, "-i", "t=x", "-n", "3")
    assert status == 0 and out.count(": ok") == 3 and out.splitlines()[-1] == "exec: 3 requests, 0 failed"


def test_hooks_print_like_the_harness(capsys, modes):
    status, out, _ = run(capsys, "run", modes, "-p", "mode=hooks")
    assert status == 0
    assert "hook meter usrTag=tag-0 key=calls count=2" in out and "hook trace usrTag=tag-0 key=stage value=exec" in out
    assert 'data="(0, 0)"' in out


# ---- async and sessions ----


def test_async_result_by_callback_from_a_thread(capsys, modes):
    status, out, err = run(capsys, "run", modes, "--async", "-i", "in=hello")
    assert status == 0, out
    assert '  output[0] key=async type=0 status=3 len=5 data="hello"' in out
    assert "callback for unknown or finished tag \"nobody\" dropped" in err
    status, out, _ = run(capsys, "run", modes, "--async", "-i", "in=hello", "-p", "mode=by_sid")
    assert status == 0, out


def test_async_codes_and_late_results(modes):
    runner = Runner(modes)
    runner.init()
    try:
        outputs = runner.exec_async({}, [Node("in", b"abc")], usr_tag="t-1")
        assert [(o.key, bytes(o.data), o.status) for o in outputs] == [("async", b"abc", 3)]
        for _ in range(500):  # the wrapper's thread goes on after its first callback
            if hasattr(runner.instance, "codes"):
                break
            time.sleep(0.01)
        assert runner.instance.codes == [0, 22015, 22015]  # one final result; unknown tags are refused
        with pytest.raises(PluginError) as raised:
            runner.exec_async({"mode": "never"}, [], wait_ms=50)
        assert raised.value.code == 22012 and raised.value.text.startswith("request timed out (22012)")
        with pytest.raises(PluginError) as raised:
            runner.exec_async({"mode": "refuse"}, [])
        assert raised.value.code == 9 and runner.describe(raised.value) == "modes says 9"
        with pytest.raises(PluginError) as raised:
            runner.exec_async({"mode": "bad"}, [])
        assert raised.value.code == 22007
    finally:
        runner.fini()


def test_async_falls_back_to_once_exec(capsys, write_wrapper):
    wrapper = write_wrapper('''
        from aiges_embed import Response, ResponseData
        class Wrapper:
            def wrapperOnceExec(self, params, reqData):
                return Response(list=[ResponseData("k", 0, 1, 0, b"sync")])
    ''')
    status, out, _ = run(capsys, "run", wrapper, "--async")
    assert status == 0 and 'key=k type=0 status=3 len=4 data="sync"' in out


def test_pull_session(capsys, modes, tmp_path):
    status, out, _ = run(capsys, "run", modes, "--session", "-i", "in=one", "-i", "in=two", "-i", "in=three",
                         "-o", str(tmp_path))
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0] == "session 0: 4 results, 4 nodes, final yes"
    # each write is followed by a read (wrapperRead's statuses), then the two queued "a" results, one per read
    assert 'key=statuses type=0 status=1 len=1 data="0"' in lines[1]
    assert 'key=statuses type=0 status=1 len=3 data="0,1"' in lines[2]
    assert 'key=a type=0 status=1 len=1 data="1"' in lines[3]
    assert 'key=a type=0 status=2 len=1 data="2"' in lines[4]
    assert (tmp_path / "a").read_bytes() == b"12"
    assert lines[-1] == "session: 1 sessions, 0 failed"


def test_push_session(capsys, modes):
    status, out, _ = run(capsys, "run", modes, "--session", "--push", "-p", "push=1", "-i", "in=one", "-i", "in=two")
    assert status == 0, out
    assert out.startswith("session 0: 2 results, 2 nodes, final yes\n")
    assert 'key=part type=0 status=1 len=3 data="one"' in out and 'key=part type=0 status=2 len=3 data="two"' in out


def test_session_failures(capsys, modes):
    status, out, _ = run(capsys, "run", modes, "--session", "-i", "in=fail")
    assert status == 1 and "session 0: error 5: modes says 5" in out
    # the echo example answers reads only: with --push (no reads) nothing arrives
    status, out, _ = run(capsys, "run", ECHO, "--session", "--push", "--wait-ms", "100", "-i", "in=x")
    assert status == 1 and "session 0: 0 results, 0 nodes, final no" in out
    assert "session 0: no final result within 100 ms" in out


BATCHES = '''
from aiges_embed import Response, ResponseData

class Wrapper:
    def wrapperOnceExecBatch(self, requests):
        if any(r.params.get("mode") == "raise" for r in requests):
            raise ValueError("no batch today")
        answers = []
        for r in requests:
            if r.params.get("mode") == "code":
                answers.append(Response.response_err(42))
                continue
            out = ResponseData("seen", 0, 1)
            out.setData(b"%s|%s|%s|%d|%s" % (r.sid.encode(), r.params["sid"].encode(), r.usrTag.encode(), r.persId,
                                             r.reqData.list[0].data))
            answers.append(Response(list=[out]))
        return answers

    def wrapperOnceExec(self, params, reqData):
        return Response.response_err(7)

    def wrapperError(self, ret):
        return f"batches says {ret}"
'''


def test_batch_routes_each_request_its_own_answer(capsys, write_wrapper):
    path = write_wrapper(BATCHES)
    status, out, _ = run(capsys, "run", path, "--batch", "-n", "3", "--pers", "5", "-i", "in=x")
    assert status == 0, out
    assert [line for line in out.splitlines() if "key=seen" in line] == [
        f'  output[0] key=seen type=0 status=3 len={len(f"run-{n}|run-{n}|tag-{n}|5|x")} data="run-{n}|run-{n}|tag-{n}|5|x"'
        for n in range(3)
    ]
    assert out.splitlines()[-1] == "batch: 3 requests, 0 failed"
    runner = Runner(path)
    runner.init()
    ok, failed = runner.exec_batch(
        [({"sid": "a"}, [Node("in", b"1")], "t-a", 0), ({"sid": "b", "mode": "code"}, [Node("in", b"2")], "t-b", 0)])
    assert bytes(ok[0].data) == b"a|a|t-a|0|1"
    assert (failed.code, runner.describe(failed)) == (42, "batches says 42")
    runner.fini()


def test_batch_failures(capsys, write_wrapper):
    path = write_wrapper(BATCHES)
    status, out, err = run(capsys, "run", path, "--batch", "-n", "2", "-p", "mode=raise")
    assert status == 1
    assert "batch of 2: error 22004: wrapper.py raised an exception (22004): Wrapper.wrapperOnceExecBatch: " \
        "ValueError: no batch today" in out
    assert "Traceback" in err
    status, out, _ = run(capsys, "run", path, "--batch", "-n", "2", "-p", "mode=code")
    assert status == 1 and out.count("error 42: batches says 42") == 2
    status, out, _ = run(capsys, "run", ECHO, "--batch", "-i", "text=x")
    assert status == 1 and "22006" in out and "defines no Wrapper.wrapperOnceExecBatch" in out
    status, _, err = run(capsys, "run", path, "--batch", "--async")
    assert status == 2 and "not allowed with" in err


def test_runner_api_and_natives_restored(modes):
    runner = Runner(modes, {"custom": "v"})
    runner.init()
    assert runner.instance.config == {"custom": "v", "wrapper.file": modes}
    assert runner.defines("wrapperOnceExec") and not runner.defines("wrapperLoadRes")
    [out] = runner.exec({"sid": "s"}, [Node("in", "text", 1)])
    assert bytes(out.data) == b"s|tag-0|0|1|text"
    outcome = runner.session({}, [Node("in", b"a"), Node("in", b"b")], sid="x")
    assert outcome.finished and outcome.data("a") == b"12"
    runner.fini()
    with pytest.raises(RuntimeError):
        aiges_embed.callback(aiges_embed.Response(), "x")
    with pytest.raises(PluginError) as raised:
        runner.exec({}, [])
    assert raised.value.code == 22001


def test_runs_as_a_module_in_a_fresh_interpreter():
    result = subprocess.run(
        [sys.executable, "-m", "aiges_embed", "run", ECHO, "-i", "text=hi"], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": PYTHON_DIR}, check=False)
    assert result.returncode == 0, result.stderr
    assert '  output[0] key=text type=0 status=3 len=2 data="hi"' in result.stdout
