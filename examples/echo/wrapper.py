"""Echo service: every request node comes back unchanged under the same key.

The smallest useful wrapper.py for the AIGES Swift plugin. Run it with
    scripts/demo.sh
or, after scripts/build.sh,
    dist/aiges-harness -c wrapper.file=examples/echo/wrapper.py -i text=hello
"""
try:
    from aiges_embed import DataListCls, Response, ResponseData, SessionCreateResponse
except ImportError:  # outside the plugin, e.g. unit-testing this file with the aiges SDK
    from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse

DataEnd = 2


class Wrapper:
    def wrapperInit(self, config: dict) -> int:
        self.requests = 0
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        self.requests += 1
        return self.echo(reqData.list)

    @staticmethod
    def echo(nodes, status=None) -> Response:
        response = Response()
        for node in nodes:
            out = ResponseData()
            out.key = node.key
            out.setDataType(node.type)
            out.setData(node.data)
            out.status = node.status if status is None else status
            response.list.append(out)
        return response

    # Sessions (pull mode): every written node comes back on the next read, with its status.
    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        self.pending = getattr(self, "pending", {})
        self.pending[sid] = []
        return SessionCreateResponse(handle=sid)

    def wrapperWrite(self, handle: str, req: DataListCls) -> int:
        self.pending[handle].extend(req.list)  # kept past the call: the plugin gives them their own bytes
        return 0

    def wrapperRead(self, handle: str) -> Response:
        nodes, self.pending[handle] = self.pending[handle], []
        return self.echo(nodes)

    def wrapperDestroy(self, handle: str) -> int:
        self.pending.pop(handle, None)
        return 0

    def wrapperError(self, ret: int) -> str:
        return f"echo wrapper error {ret}"

    def wrapperFini(self) -> int:
        return 0
