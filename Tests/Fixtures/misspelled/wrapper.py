"""Defines an entry point under a misspelled name (and one correct entry point)."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExce(self, params, reqData):
        return Response(list=[ResponseData(key="a", data=b"never called")])

    def wrapperCreate(self, params, sid):
        return sid

    def wrapperWriteData(self, handle, req):
        return 0
