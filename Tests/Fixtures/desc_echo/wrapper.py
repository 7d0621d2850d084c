"""Echoes each node's desc back on its output node, adding one entry."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        response = Response()
        for node in reqData.list:
            out = ResponseData()
            out.key = node.key
            out.setData(node.data)
            out.desc = dict(node.desc, echoed="yes", frames=3)
            response.list.append(out)
        return response
