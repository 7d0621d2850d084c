"""One wrapper, many behaviours, chosen by the request param "mode"."""
import gc
import logging
import threading
import time

import numpy as np

from aiges_embed import Response, ResponseData


def node(key, data, **fields):
    out = ResponseData()
    out.key = key
    out.data = data
    out.len = fields.get("len", 0)
    out.type = fields.get("type", 0)
    return out


class ClearsTheList:
    """An output item whose key property empties the Response's list while the plugin walks it."""

    def __init__(self, response):
        self.response, self.len, self.status, self.type, self.data, self.desc = response, 0, 3, 0, b"x" * 64, None

    @property
    def key(self):
        self.response.list.clear()
        return "k"


class ClearsTheDict:
    """A desc key whose str() empties the desc dict (freeing the value) while the plugin reads it."""

    def __init__(self, desc):
        self.desc = desc

    def __str__(self):
        self.desc.clear()
        return "k"


class Text:
    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


class Wrapper:
    def wrapperInit(self, config):
        self.prepared = np.arange(1024, dtype=np.int32)
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        mode = params.get("mode", "")
        if mode == "raise":
            raise ValueError(f"boom for {params['sid']}")
        if mode == "response_err":
            return Response.response_err(100)
        if mode == "wrong_type":
            return "not a Response"
        if mode == "int_code":
            return 7
        if mode == "empty":
            return Response()
        if mode == "bad_data":
            return Response(list=[node("x", 12345)])
        if mode == "len_too_big":
            return Response(list=[node("x", b"abc", len=10)])
        if mode == "len_prefix":
            return Response(list=[node("x", b"abcdef", len=3)])
        if mode == "over_4gib":
            return Response(list=[node("x", np.zeros((1 << 32) + 1, dtype=np.uint8))])  # calloc'd: never touched
        if mode == "bad_key":
            return Response(list=[node(None, b"abc")])
        if mode == "list_none":
            response = Response()
            response.list = None
            return response
        if mode == "list_int":
            return Response(list=5)
        if mode == "code_str":
            return Response(list=[node("x", b"abc")], error_code="7")
        if mode == "nul_key":
            return Response(list=[node("a\0b", b"abc")])
        if mode == "surrogate_key":
            return Response(list=[node("k\udcff\ud800", b"abc")])
        if mode == "surrogate_raise":
            raise ValueError("bad \ud800 text \udcff end")
        if mode == "set_none":
            out = ResponseData()
            out.key = "none"
            out.setData(None)
            return Response(list=[out, node("after", b"ok")])
        if mode == "len_2gib":
            return Response(list=[node("x", self.big(), len=(1 << 31) + 5)])
        if mode == "huge_raise":
            raise RuntimeError(params["sid"] + "-" + "x" * 200_000)
        if mode == "pop_sid":
            sid = params.pop("sid")
            expected = sid
            del sid
            params.clear()
            gc.collect()
            for _ in range(200):
                "".join(["garbage", str(time.time())])  # reuse freed memory
            logging.getLogger("behaviours").warning("after pop, expected sid %s", expected)
            return Response(list=[node("sid", expected.encode())])
        if mode == "mutate_later":
            buffer = bytearray(b"A" * 4096)
            array = np.full(4096, 65, dtype=np.uint8)

            def scribble():
                time.sleep(0.05)
                buffer[:] = b"B" * 4096
                array[:] = 66

            threading.Thread(target=scribble).start()
            return Response(list=[node("bytearray", buffer), node("numpy", array)])
        if mode == "varying_code":
            self.codes = getattr(self, "codes", 10000) + 1
            return Response.response_err(self.codes)
        if mode == "list_mutated":
            response = Response()
            response.list = [ClearsTheList(response) for _ in range(3)]
            return response
        if mode == "desc_mutated":
            out = node("out", b"abc")
            out.desc = {}
            out.desc[ClearsTheDict(out.desc)] = Text("v" * 100)
            return Response(list=[out])
        if mode == "kinds":
            return Response(list=[
                node("bytes", b"bytes-data"),
                node("bytearray", bytearray(b"bytearray-data")),
                node("memoryview", memoryview(b"xxmemoryview-data")[2:]),
                node("str", "str-data-\u00e9"),
                node("numpy", self.prepared),
                node("strided", self.prepared[::2]),
                node("none", None),
            ])
        return Response(list=[node("echo", reqData.list[0].data if reqData.list else b"")])

    def big(self):
        if not hasattr(self, "_big"):
            self._big = np.zeros((1 << 31) + 5, dtype=np.uint8)  # calloc'd: never touched
        return self._big

    def wrapperError(self, ret):
        return f"behaviours wrapper says {ret}"
