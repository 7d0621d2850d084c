"""The public names of aiges_embed (python-api.md), as wrapper.py uses them outside the plugin."""
import array

import pytest

import aiges_embed
from aiges_embed import (
    BatchRequest,
    DataListCls,
    DataListNode,
    Response,
    ResponseData,
    SessionCreateResponse,
    callback,
    callback_metric,
    callback_trace,
)


def test_constants():
    assert (aiges_embed.DataText, aiges_embed.DataAudio, aiges_embed.DataImage, aiges_embed.DataVideo) == (0, 1, 2, 3)
    assert aiges_embed.DataPer == 4
    assert (aiges_embed.DataBegin, aiges_embed.DataContinue, aiges_embed.DataEnd, aiges_embed.DataOnce) == (0, 1, 2, 3)
    assert aiges_embed.Once == aiges_embed.DataOnce


def test_node_data_view_and_len():
    node = DataListNode("text", b"hello", type=aiges_embed.DataAudio, status=aiges_embed.DataEnd, desc={"rate": "16"})
    assert (node.key, node.len, node.type, node.status, node.desc) == ("text", 5, 1, 2, {"rate": "16"})
    assert node.data == b"hello" and node.get_data() == b"hello"
    view = node.view
    assert isinstance(view, memoryview) and view.readonly and bytes(view) == b"hello"
    assert node.view is view  # made once
    with pytest.raises(TypeError):
        view[0] = 0


def test_node_defaults():
    node = DataListNode()
    assert (node.key, node.data, node.len, node.type, node.status, node.desc) == ("", b"", 0, 0, 3, {})
    assert bytes(node.view) == b""
    assert DataListNode("k", None).len == 0 and bytes(DataListNode("k", None).view) == b""
    assert DataListNode("k", b"abc", len=2).len == 2  # len is what the loader said


def test_node_from_memoryview_copies_on_first_read():
    source = bytearray(b"abc")
    node = DataListNode("k", memoryview(source))
    assert node.len == 3
    assert node.data == b"abc" and isinstance(node.data, bytes)
    source[0] = ord("z")
    assert node.data == b"abc"  # the node's own copy


def test_node_data_setter_replaces_the_bytes_and_view():
    node = DataListNode("k", b"old")
    assert bytes(node.view) == b"old"
    node.data = b"new!"
    assert node.data == b"new!" and bytes(node.view) == b"new!"


def test_node_own_and_detach_keep_the_bytes():
    node = DataListNode("k", memoryview(b"xyz"))
    node._detach()
    assert node.data == b"xyz"
    node._own()
    assert node.data == b"xyz"


def test_node_has_slots_only():
    with pytest.raises(AttributeError):
        DataListNode().other = 1
    assert "DataListNode(key='k', len=1" in repr(DataListNode("k", b"x"))


def test_request_list_and_get():
    first, second = DataListNode("a", b"1"), DataListNode("b", b"2")
    request = DataListCls([first, second, DataListNode("a", b"3")])
    assert request.get("a") is first and request.get("b") is second and request.get("c") is None
    assert DataListCls().list == []
    assert "DataListCls([" in repr(request)


def test_response_data_constructors():
    out = ResponseData()
    assert (out.key, out.len, out.status, out.type, out.data, out.desc) == ("", 0, 1, 0, None, None)
    out = ResponseData("k", 3, aiges_embed.DataEnd, aiges_embed.DataImage)
    assert (out.key, out.len, out.status, out.type) == ("k", 3, 2, 2)
    out.setDataType(aiges_embed.DataVideo)
    assert out.type == 3
    assert "ResponseData(key='k'" in repr(out)


@pytest.mark.parametrize(
    "data, length",
    [
        (None, 0),
        (b"bytes", 5),
        ("str-\u00e9", 6),  # UTF-8
        ("bad \udcff byte", 10),  # a surrogate escape stands for one byte
        (bytearray(b"12345678"), 8),
        (memoryview(b"abcdef")[2:], 4),
        (array.array("i", [1, 2, 3]), 12),  # any buffer: its size in bytes
    ],
)
def test_set_data_sets_len(data, length):
    out = ResponseData("k", 99)
    out.setData(data)
    assert out.data is data and out.len == length


def test_set_data_refuses_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        ResponseData().setData(12345)


def test_response():
    response = Response()
    assert response.list == [] and response.error_code == 0
    response.list.append(ResponseData("k"))
    assert len(response.list) == 1
    failed = Response.response_err(100)
    assert isinstance(failed, Response) and failed.error_code == 100 and failed.list == []
    assert "Response(error_code=100" in repr(failed)
    assert Response(list=[1], error_code=5).list == [1]


def test_batch_request():
    request = BatchRequest({"sid": "s-1", "appid": "a"}, DataListCls([DataListNode("k", b"v")]), "tag-1", 7)
    assert (request.params["appid"], request.reqData.get("k").data, request.usrTag, request.persId) == (
        "a", b"v", "tag-1", 7)
    assert request.sid == "s-1" and "sid='s-1'" in repr(request)
    empty = BatchRequest()
    assert (empty.params, empty.reqData.list, empty.usrTag, empty.persId, empty.sid) == ({}, [], "", 0, "")
    with pytest.raises(AttributeError):
        empty.other = 1  # __slots__ only


def test_session_create_response():
    created = SessionCreateResponse()
    assert (created.handle, created.error_code) == ("", 0)
    created = SessionCreateResponse(handle="h-1", error_code=7)
    assert (created.handle, created.error_code) == ("h-1", 7)


@pytest.mark.parametrize(
    "call",
    [lambda: callback(Response(), "tag"), lambda: callback_metric("t", "k", 1), lambda: callback_trace("t", "k", "v")],
)
def test_callbacks_outside_the_plugin_raise(call):
    with pytest.raises(RuntimeError, match="only work in the process that loaded libwrapper.so"):
        call()


def test_request_memory_is_not_reachable_outside_the_plugin():
    node = DataListNode("k", None)
    node._loan = object()  # what only the plugin makes
    with pytest.raises(ValueError, match="belongs to the plugin's process"):
        node.data
