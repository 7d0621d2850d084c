"""Prints and logs while serving; fails when asked to, with a traceback."""
import logging

from aiges_embed import Response, ResponseData

logger = logging.getLogger("chatty")


class Wrapper:
    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        print(f"printing for {params['sid']}")
        logger.warning("warning for %s", params["sid"])
        if params.get("fail"):
            return self.broken(params)
        out = ResponseData()
        out.key = "ok"
        out.setData(reqData.list[0].data if reqData.list else b"")
        return Response(list=[out])

    def broken(self, params):
        raise KeyError(f"no model for {params['sid']}")
