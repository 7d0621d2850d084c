"""Only wrapperOnceExec: no init, fini, error, sessions, async or personalisation."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        out = ResponseData()
        out.key = "count"
        out.setData(str(len(reqData.list)).encode())
        return Response(list=[out])
