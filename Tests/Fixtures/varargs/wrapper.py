"""A wrapperOnceExec taking *args gets the newest form's four arguments."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, *args):
        params, reqData, usrTag, persId = args
        out = ResponseData()
        out.key = "count"
        out.setData(f"{len(args)} {usrTag} {persId}".encode())
        return Response(list=[out])
