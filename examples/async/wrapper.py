"""Asynchronous one-shot service: requests are answered from a worker pool via aiges_embed.callback.

wrapperOnceExecAsync returns at once; a pool thread (optionally after the request's
"delay_ms" param) echoes the input nodes back, upper-casing text nodes, and delivers
the Response with callback(response, usrTag). With the loader's asyncMode = true,
each result reaches that request's own callback.

wrapperOnceExec does the same work synchronously, for loaders in sync mode.
"""
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from aiges_embed import DataListCls, Response, ResponseData, callback
except ImportError:
    from aiges.dto import DataListCls, Response, ResponseData, callback

DataText = 0


class Wrapper:
    def wrapperInit(self, config: dict) -> int:
        self.pool = ThreadPoolExecutor(max_workers=int(config.get("async.workers", "8")))
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        return self.answer(reqData)

    def wrapperOnceExecAsync(self, params: dict, reqData: DataListCls, usrTag: str, persId: int = 0) -> int:
        delay = int(params.get("delay_ms", "0")) / 1000.0
        self.pool.submit(self.later, reqData, usrTag, delay)  # reqData outlives the call: the plugin copies it
        return 0

    def later(self, reqData, usrTag, delay):
        if delay:
            time.sleep(delay)
        callback(self.answer(reqData), usrTag)

    @staticmethod
    def answer(reqData):
        response = Response()
        for node in reqData.list:
            out = ResponseData()
            out.key = node.key
            out.setDataType(node.type)
            out.setData(node.data.upper() if node.type == DataText else node.data)
            response.list.append(out)
        return response

    def wrapperFini(self) -> int:
        self.pool.shutdown(wait=True)
        return 0
