"""Fixture for aiges-faults: a wrapper with only wrapperOnceExec (no wrapperOnceExecAsync), so
wrapperExecAsync is served by running wrapperOnceExec on the plugin's fallback workers.

Param "block=1" sleeps "sleep_s" seconds (default 5; time.sleep releases the GIL) before answering.
Answers "echo" = b"echo:" + the first input node's data. Records "exec_start USRTAG" and
"exec_end USRTAG" to the file named by config key "record".
"""
import threading
import time

from aiges_embed import DataEnd, Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        self.record_path = config.get("record")
        self.lock = threading.Lock()
        return 0

    def record(self, *words):
        if self.record_path:
            with self.lock, open(self.record_path, "a") as f:
                f.write(" ".join(str(w) for w in words) + "\n")

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        self.record("exec_start", usrTag)
        if params.get("block") == "1":
            time.sleep(float(params.get("sleep_s", "5")))
        out = ResponseData()
        out.key = "echo"
        out.setData(b"echo:" + (reqData.list[0].data if reqData.list else b""))
        out.status = DataEnd
        self.record("exec_end", usrTag)
        return Response(list=[out])
