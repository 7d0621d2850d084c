"""Fixture for aiges-faults: a wrapper with only wrapperOnceExec (no wrapperOnceExecAsync), so
wrapperExecAsync is served by running wrapperOnceExec on the plugin's fallback workers.

Param "block=1" sleeps "sleep_s" seconds (default 5; time.sleep releases the GIL) before answering.
Param "use_model=1" then uses the model that wrapperInit opened and wrapperFini closes: if
wrapperFini already ran, it records "exec_model_closed USRTAG" and raises (a real wrapper would
touch freed state here). Answers "echo" = b"echo:" + the first input node's data. Records
"exec_start USRTAG" and "exec_end USRTAG" (and "fini" from wrapperFini) to the file named by config
key "record", in the order they happen.
"""
import threading
import time

from aiges_embed import DataEnd, Response, ResponseData


class Model:
    """Stands for what a real wrapper frees in wrapperFini (a model, a GPU context)."""

    def __init__(self):
        self.closed = False

    def run(self, data):
        if self.closed:
            raise RuntimeError("the model was closed by wrapperFini while wrapperOnceExec was still running")
        return b"echo:" + data


class Wrapper:
    def wrapperInit(self, config):
        self.record_path = config.get("record")
        self.lock = threading.Lock()
        self.model = Model()
        return 0

    def record(self, *words):
        if self.record_path:
            with self.lock, open(self.record_path, "a") as f:
                f.write(" ".join(str(w) for w in words) + "\n")

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        self.record("exec_start", usrTag)
        if params.get("block") == "1":
            time.sleep(float(params.get("sleep_s", "5")))
        data = reqData.list[0].data if reqData.list else b""
        if params.get("use_model") == "1":
            if self.model.closed:
                self.record("exec_model_closed", usrTag)
            answer = self.model.run(data)
        else:
            answer = b"echo:" + data
        out = ResponseData()
        out.key = "echo"
        out.setData(answer)
        out.status = DataEnd
        self.record("exec_end", usrTag)
        return Response(list=[out])

    def wrapperFini(self):
        self.record("fini")
        self.model.closed = True
        return 0
