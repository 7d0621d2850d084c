"""Serves through a class named by the wrapper.class config key."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData):
        raise RuntimeError("the default class must not be used")


class Custom:
    def wrapperOnceExec(self, params, reqData):
        out = ResponseData()
        out.key = "who"
        out.setData(b"custom class")
        return Response(list=[out])
