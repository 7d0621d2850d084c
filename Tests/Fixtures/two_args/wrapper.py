"""Oldest signature: wrapperOnceExec(params, reqData); builds its list by assignment."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        return 0

    def wrapperOnceExec(self, params, reqData):
        r = Response()
        out = ResponseData()
        out.key = "result"
        out.setData(b"two-args:" + reqData.get("in").data + b":" + params["sid"].encode())
        r.list = [out]
        return r
