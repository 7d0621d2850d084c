"""The oldest signature forms in use: each method reports what it was given."""
import json

from aiges_embed import Response, ResponseData, SessionCreateResponse, callback


def reply(key, value, status=3):
    out = ResponseData()
    out.key = key
    out.status = status
    out.setData(json.dumps(value).encode())
    return Response(list=[out])


class Wrapper:
    def wrapperInit(self, config):
        self.seen = {}
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag):
        return reply("once", {"sid": params["sid"], "usrTag": usrTag, "keys": [n.key for n in reqData.list]})

    def wrapperOnceExecAsync(self, params, reqData, sid):
        callback(reply("async", {"third": sid}), sid)
        return 0

    def wrapperCreate(self, params, sid):
        self.seen[sid] = []
        return SessionCreateResponse(handle="h-" + sid)

    def wrapperWrite(self, handle, req, sid):
        self.seen[sid].append((handle, req.list[0].data.decode(), req.list[0].status))
        return 0

    def wrapperRead(self, handle, sid):
        done = any(status == 2 for _, _, status in self.seen[sid])
        return reply("session", {"handle": handle, "sid": sid, "writes": self.seen[sid]}, 2 if done else 1)

    def wrapperDestroy(self, handle):
        return 0
