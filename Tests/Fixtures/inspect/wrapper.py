"""Reports what reached Python: config, params, usrTag, persId and every input node."""
import json

from aiges_embed import DataListCls, Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        self.config = dict(config)
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        info = {
            "config": self.config,
            "params": params,
            "usrTag": usrTag,
            "persId": persId,
            "nodes": [
                {"key": n.key, "len": n.len, "type": n.type, "status": n.status, "desc": n.desc,
                 "data": n.data.decode("latin-1"), "view_len": n.view.nbytes, "readonly": n.view.readonly}
                for n in reqData.list
            ],
            "get_missing": reqData.get("no-such-key") is None,
        }
        out = ResponseData("info", 0, 0, 0)
        out.setData(json.dumps(info).encode())
        return Response(list=[out])
