"""Worker-mode fixture: only the first worker process to start succeeds.

wrapperInit creates the file named by config key fixture.claim; a process that finds it already
there (the second worker) returns 4321, so wrapperInit fails after one worker had started.
"""
import os

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        try:
            os.close(os.open(config["fixture.claim"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return 4321
        return 0

    def wrapperError(self, ret):
        return f"another worker already claimed the licence ({ret})"

    def wrapperOnceExec(self, params, reqData):
        out = ResponseData()
        out.key = "ok"
        out.setData(b"ok")
        return Response(list=[out])
