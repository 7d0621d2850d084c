"""The runner's copy of the plugin's contract checks: codes and texts as libwrapper.so gives them."""
import array
import io
import mmap
import os
import re

import pytest

from aiges_embed import Response, ResponseData, SessionCreateResponse
from aiges_embed import _contract as contract
from aiges_embed._contract import (
    PluginError,
    check_batch,
    check_code,
    check_response,
    plan_arguments,
    session_handle,
)

from conftest import REPO


def node(key, data, **fields):
    out = ResponseData(key, fields.get("len", 0), fields.get("status", 1), fields.get("type", 0))
    out.data = data
    out.desc = fields.get("desc")
    return out


def failure(response, once=True):
    with pytest.raises(PluginError) as raised:
        check_response(response, once=once)
    return raised.value.code, raised.value.detail


def test_one_shot_output_gets_status_once_and_keeps_the_rest():
    [out] = check_response(Response([node("k", b"abc", status=1, type=2, desc={"rate": 16})]), once=True)
    assert (out.key, out.type, out.status, out.len, bytes(out.data)) == ("k", 2, 3, 3, b"abc")
    assert out.desc == [("rate", "16")]


def test_stream_output_keeps_its_status_and_may_be_empty():
    [out] = check_response(Response([node("k", b"x", status=2)]), once=False)
    assert out.status == 2
    assert check_response(Response(), once=False) == []
    assert check_response(Response(list=(node("k", b"x"),)), once=False)[0].key == "k"  # a tuple is accepted


@pytest.mark.parametrize(
    "data, expected",
    [
        (None, b""),
        (b"bytes", b"bytes"),
        (bytearray(b"bytearray"), b"bytearray"),
        (memoryview(b"xxview")[2:], b"view"),
        ("str-\u00e9", "str-\u00e9".encode()),
        (array.array("h", [1, 2]), array.array("h", [1, 2]).tobytes()),
        (memoryview(b"abcdef")[::2], b"ace"),  # not contiguous: made contiguous
    ],
)
def test_data_kinds(data, expected):
    [out] = check_response(Response([node("k", data)]), once=True)
    assert bytes(out.data) == expected and out.len == len(expected)


def test_writable_buffers_are_copied_when_returned():
    buffer = bytearray(b"AAAA")
    [out] = check_response(Response([node("k", buffer)]), once=True)
    buffer[:] = b"BBBB"
    assert bytes(out.data) == b"AAAA"


def test_len_sends_a_prefix():
    [out] = check_response(Response([node("k", b"abcdef", len=3)]), once=True)
    assert bytes(out.data) == b"abc" and out.len == 3


@pytest.mark.parametrize(
    "response, code, detail",
    [
        ("not a Response", 22005, "expected a Response, got str"),
        (0, 22005, "expected a Response, got 0"),
        (7, 7, ""),
        (Response.response_err(100), 100, ""),
        (Response(list=[node("x", b"a")], error_code="7"), 22005,
         "Response.error_code must be an int that fits in 32 bits, got str '7'"),
        (Response(list=[node("x", b"a")], error_code=1 << 40), 22005,
         "Response.error_code must be an int that fits in 32 bits, got int 1099511627776"),
        (Response(list=5), 22005, "Response.list must be a list of ResponseData, got int 5"),
        (Response(list=None), 22007, "wrapperOnceExec returned a Response whose list is empty"),  # None means []
        (Response(), 22007, "wrapperOnceExec returned a Response whose list is empty"),
        (Response([node(None, b"abc")]), 22008, "ResponseData.key must be a str, got NoneType None"),
        (Response([node("a\0b", b"abc")]), 22008, "ResponseData.key str 'a\\x00b' contains a NUL character"),
        (Response([node("x", 12345)]), 22008, '"x": data must be bytes-like or str, got int'),
        (Response([node("x", b"abc", len=10)]), 22008, '"x": len 10 is larger than its data (3 bytes)'),
        (Response([node("x", b"abc", len=-1)]), 22008, '"x": len must be an int from 0 to 4294967295, got int -1'),
        (Response([node("x", b"abc", type="2")]), 22008,
         "\"x\": type must be an int from 0 to 4294967295, got str '2'"),
        (Response([node("x", b"abc", status=1 << 32)]), 22008,
         '"x": status must be an int from 0 to 4294967295, got int 4294967296'),
        (Response([node("x", b"abc", desc=["a"])]), 22008, '"x": desc must be a dict'),
        (Response([object()]), 22005, "reading .key: AttributeError: 'object' object has no attribute 'key'"),
    ],
)
def test_refusals(response, code, detail):
    if isinstance(response, Response) and response.list is None:
        response.list = []
    assert failure(response) == (code, detail)


def test_list_none_is_the_wrong_type():
    response = Response()
    response.list = None
    assert failure(response) == (22005, "Response.list must be a list of ResponseData, got NoneType None")


def test_over_4_gib_is_refused_without_copying():
    try:
        huge = mmap.mmap(-1, (1 << 32) + 1, prot=mmap.PROT_READ)  # address space only: never touched
    except (OSError, OverflowError, ValueError):
        pytest.skip("no 4 GiB mapping here")
    assert failure(Response([node("x", huge)])) == (22008, '"x": 4294967297 bytes is over the 4 GiB limit of len')
    [out] = check_response(Response([node("x", huge, len=3)]), once=True)  # a prefix of it is fine
    assert bytes(out.data) == b"\0\0\0"


def test_output_descriptions():
    assert contract.describe("x" * 50) == "str"
    assert contract.describe([1, 2]) == "list [1, 2]"
    assert contract.type_name(Response()) == "Response"
    assert contract.type_name(iter([])) == "list_iterator"
    assert contract.type_name(io.BytesIO()) == "_io.BytesIO"  # an extension module's type: tp_name has the module

    class BadRepr:
        def __repr__(self):
            raise RuntimeError

    assert contract.describe(BadRepr()) == "BadRepr"


def test_error_texts():
    error = PluginError(22004, "Wrapper.wrapperOnceExec: ValueError: boom")
    assert error.is_plugin_code
    assert error.text == "wrapper.py raised an exception (22004): Wrapper.wrapperOnceExec: ValueError: boom"
    assert PluginError(22012).text == "request timed out (22012)"
    assert not PluginError(100, "mine").is_plugin_code


def test_check_code():
    assert check_code(None, "wrapperWrite") == 0
    assert check_code(5, "wrapperWrite") == 5
    assert check_code(True, "wrapperWrite") == 1  # a bool is an int
    with pytest.raises(PluginError) as raised:
        check_code("0", "wrapperWrite")
    assert (raised.value.code, raised.value.detail) == (22005, "Wrapper.wrapperWrite returned str, expected int")
    with pytest.raises(PluginError):
        check_code(1 << 31, "wrapperInit")


def test_session_handle():
    assert session_handle(SessionCreateResponse(handle="h")) == "h"
    assert session_handle("plain") == "plain"
    assert session_handle(SessionCreateResponse(handle=42)) == "42"
    with pytest.raises(PluginError) as raised:
        session_handle(SessionCreateResponse(handle="h", error_code=9))
    assert raised.value.code == 9
    with pytest.raises(PluginError) as raised:
        session_handle(Response())
    assert (raised.value.code, raised.value.detail) == (
        22005, "wrapperCreate returned Response, expected SessionCreateResponse")


def test_take_for_read_stops_at_a_repeated_key_and_at_errors():
    a1, b1, a2 = (contract.Output(key, 0, 1, b"", None) for key in ("a", "b", "a"))
    queue = [a1, b1, a2, 22008, a1]
    assert contract.take_for_read(queue) == ([a1, b1], None)
    assert contract.take_for_read(queue) == ([a2], None)
    assert contract.take_for_read(queue) == ([], 22008)
    assert contract.take_for_read(queue) == ([a1], None)
    assert queue == [] and contract.take_for_read(queue) == ([], None)


def test_each_request_of_a_batch_gets_its_own_outcome():
    ok, code, bad, empty = check_batch(
        [Response([node("k", b"one")]), Response.response_err(42), Response([node("x", 5)]), Response([])], 4)
    assert [(out.key, bytes(out.data), out.status) for out in ok] == [("k", b"one", 3)]
    assert (code.code, code.is_plugin_code) == (42, False)
    assert bad.code == contract.INVALID_OUTPUT
    assert bad.detail == 'Wrapper.wrapperOnceExecBatch, result 3 of 4: "x": data must be bytes-like or str, got int'
    assert (empty.code, empty.detail) == (
        contract.EMPTY_RESPONSE, "Wrapper.wrapperOnceExecBatch, result 4 of 4: a Response whose list is empty")
    [only] = check_batch((Response([node("k", b"t")]),), 1)  # a tuple is accepted
    assert only[0].key == "k"


@pytest.mark.parametrize(
    "results, detail",
    [
        (None, "Wrapper.wrapperOnceExecBatch returned NoneType None, expected a list of 2 Response"),
        (Response(), "Wrapper.wrapperOnceExecBatch returned Response Response(error_code=0, list=[]), expected a list of 2 "
         "Response"),
        ([Response()], "Wrapper.wrapperOnceExecBatch returned 1 result(s) for 2 request(s): one Response each, in order"),
    ],
)
def test_a_batch_not_answered_one_response_per_request_fails_whole(results, detail):
    with pytest.raises(PluginError) as raised:
        check_batch(results, 2)
    assert (raised.value.code, raised.value.detail) == (contract.BAD_RETURN_TYPE, detail)


@pytest.mark.parametrize(
    "method, parameters, var_args, plan",
    [
        ("wrapperOnceExec", [("params", False), ("reqdata", False), ("usrtag", False), ("persid", False)], False,
         ["params", "reqData", "usrTag", "persId"]),
        ("wrapperOnceExec", [("params", False), ("reqdata", False)], False, ["params", "reqData"]),
        ("wrapperOnceExec", [("params", False), ("reqdata", False), ("sid", False)], False,
         ["params", "reqData", "sid"]),
        ("wrapperOnceExec", [("p", False), ("r", False), ("tag", True)], False, ["params", "reqData", "usrTag"]),
        ("wrapperOnceExec", [("params", False), ("req", False), ("extra", True)], False, ["params", "reqData"]),
        ("wrapperOnceExecAsync", [("params", False), ("reqdata", False), ("sid", False)], False,
         ["params", "reqData", "sid"]),
        ("wrapperWrite", [("handle", False), ("req", False), ("sid", False)], False, ["handle", "reqData", "sid"]),
        ("wrapperCreate", [("params", False), ("sid", False)], False, ["params", "sid"]),
        ("wrapperLoadRes", [("reqdata", False), ("resid", False)], False, ["reqData", "resId"]),
        ("wrapperOnceExec", [], True, ["params", "reqData", "usrTag", "persId"]),
        ("wrapperError", [("ret", False)], False, ["code"]),
        ("wrapperFini", [("what", False)], False, [None]),
        ("wrapperOnceExecBatch", [("requests", False)], False, ["requests"]),
        ("wrapperOnceExecBatch", [("batch", False)], False, ["requests"]),
        ("wrapperOnceExecBatch", [("items", False)], False, ["requests"]),
        ("wrapperOnceExecBatch", [], True, ["requests"]),
    ],
)
def test_plan_arguments(method, parameters, var_args, plan):
    warnings = []
    assert plan_arguments(method, parameters, var_args, warnings.append) == plan
    assert bool(warnings) == (None in plan)


# ---- the copies stay in step with the Swift sources they mirror ----

SWIFT = os.path.join(REPO, "Sources", "AigesBridge")
needs_swift = pytest.mark.skipif(not os.path.isdir(SWIFT), reason="the plugin's Swift sources are not beside")


def swift_source(name):
    with open(os.path.join(SWIFT, name), encoding="utf-8") as file:
        return file.read()


@needs_swift
def test_codes_and_summaries_match_errors_swift():
    source = swift_source("Errors.swift")
    codes = dict(re.findall(r"case (\w+) = (\d+)", source))
    summaries = dict(re.findall(r'case \.(\w+): "([^"]*)"', source))
    assert {int(code): summaries[name] for name, code in codes.items()} == contract.SUMMARIES


@needs_swift
def test_parameter_names_match_user_wrapper_swift():
    source = swift_source("UserWrapper.swift")
    cases = re.findall(r"case \.(\w+): \[([^\]]*)\]", source)
    names = {kind: tuple(re.findall(r'"([^"]+)"', values)) for kind, values in cases if '"' in values}
    assert names == contract.KIND_NAMES


@needs_swift
def test_batch_texts_match_in_process_engine_batch_swift():
    source = swift_source("InProcessEngine+Batch.swift")
    for text in ("one Response each, in order", "a Response whose list is empty", "Wrapper.wrapperOnceExecBatch, result ",
                 "expected a list of "):
        assert text in source


def test_load_time_checks_match_the_plugin(tmp_path, capsys):
    """A class defining no entry point fails init with 22002; a misspelled entry point is named."""
    import pytest

    from aiges_embed import _contract as contract
    from aiges_embed.runner import Runner

    none = tmp_path / "none" / "wrapper.py"
    none.parent.mkdir()
    none.write_text("class Wrapper:\n    def wrapperOnceExce(self, params, reqData):\n        return None\n")
    with pytest.raises(contract.PluginError) as raised:
        Runner(str(none)).init()
    assert raised.value.code == contract.INIT_FAILED
    assert "defines none of wrapperOnceExec, wrapperOnceExecAsync, wrapperCreate" in str(raised.value.detail)

    typo = tmp_path / "typo" / "wrapper.py"
    typo.parent.mkdir()
    typo.write_text(
        "class Wrapper:\n"
        "    def wrapperCreate(self, params, sid):\n        return sid\n"
        "    def wrapperOnceExce(self, params, reqData):\n        return None\n")
    runner = Runner(str(typo))
    runner.init()
    runner.fini()
    assert "Wrapper.wrapperOnceExce is not an entry point the plugin calls; did you mean wrapperOnceExec?" in (
        capsys.readouterr().err)
