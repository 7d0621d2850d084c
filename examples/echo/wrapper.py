"""Echo service: every request node comes back unchanged under the same key.

The smallest useful wrapper.py for the AIGES Swift plugin. Run it with
    scripts/demo.sh
or, after scripts/build.sh,
    dist/aiges-harness -c wrapper.file=examples/echo/wrapper.py -i text=hello
"""
try:
    from aiges_embed import DataListCls, Response, ResponseData
except ImportError:  # outside the plugin, e.g. unit-testing this file with the aiges SDK
    from aiges.dto import DataListCls, Response, ResponseData


class Wrapper:
    def wrapperInit(self, config: dict) -> int:
        self.requests = 0
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        self.requests += 1
        response = Response()
        for node in reqData.list:
            out = ResponseData()
            out.key = node.key
            out.setDataType(node.type)
            out.setData(node.data)
            response.list.append(out)
        return response

    def wrapperError(self, ret: int) -> str:
        return f"echo wrapper error {ret}"

    def wrapperFini(self) -> int:
        return 0
