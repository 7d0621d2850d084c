"""Personalisation by patch_id (the newest form): resources are used by later requests."""
import json

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        self.resources = {}
        return 0

    def wrapperLoadRes(self, reqData, patch_id):
        self.resources[patch_id] = reqData.list[0].data.decode()  # kept: the node's bytes are copied for us
        return 0

    def wrapperUnloadRes(self, patch_id):
        return 0 if self.resources.pop(patch_id, None) is not None else 404

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        out = ResponseData()
        out.key = "state"
        out.setData(json.dumps({"persId": persId, "resources": self.resources}).encode())
        return Response(list=[out])
