"""One wrapper, many behaviours, chosen by the request param "mode"."""
import numpy as np

from aiges_embed import Response, ResponseData


def node(key, data, **fields):
    out = ResponseData()
    out.key = key
    out.data = data
    out.len = fields.get("len", 0)
    out.type = fields.get("type", 0)
    return out


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

    def wrapperError(self, ret):
        return f"behaviours wrapper says {ret}"
