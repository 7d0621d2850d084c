"""Personalisation by the loader's numeric id (an older form)."""
from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        self.loaded = {}
        return 0

    def wrapperLoadRes(self, reqData, resId):
        assert isinstance(resId, int), f"resId should be an int, got {type(resId).__name__}"
        self.loaded[resId] = reqData.list[0].data
        return 0

    def wrapperUnloadRes(self, resId):
        assert isinstance(resId, int)
        self.loaded.pop(resId)
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        out = ResponseData()
        out.key = "resource"
        out.setData(self.loaded.get(persId, b"none"))
        return Response(list=[out])
