"""Reports where the plugin published aiges_embed for child processes (its folders on sys.path)."""
import sys

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData):
        out = ResponseData()
        out.key = "paths"
        out.setData("\n".join(p for p in sys.path if "aiges-embed" in p).encode())
        return Response(list=[out])
