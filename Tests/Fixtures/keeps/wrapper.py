"""Keeps request objects past the call, as queue-based wrappers do, and reports on them next time.

Call 1 stores the node, the whole DataListCls, a memoryview and the node list; call 2 reads them
after the caller has poisoned and freed the original buffers. "stale_view" is the kept view's
bytes, or the ValueError it raises (with data.lend, where views are the loader's memory).
"""
import json

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        self.kept = None
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        if self.kept is None:
            first = reqData.list[0]
            self.kept = {"node": first, "request": reqData, "view": first.view, "items": list(reqData.list)}
            report = {"stored": first.len}
        else:
            kept = self.kept
            try:
                stale = bytes(kept["view"]).decode()
            except ValueError as error:
                stale = f"ValueError: {error}"
            report = {
                "node": kept["node"].data.decode(),
                "node_view": bytes(kept["node"].view).decode(),
                "request": kept["request"].list[1].data.decode(),
                "items": [n.data.decode() for n in kept["items"]],
                "stale_view": stale,
            }
        out = ResponseData()
        out.key = "report"
        out.setData(json.dumps(report).encode())
        return Response(list=[out])
