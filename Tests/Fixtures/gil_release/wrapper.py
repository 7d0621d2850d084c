"""Fixture for the entry gate: each wrapperOnceExec sleeps (param "sleep_ms", default 20) with the
GIL released, as a model waiting for its device does, and answers "overlap" = the most calls that
were inside at once so far (as text). Callers on other loader threads must run meanwhile, not queue
behind the gate's owner.

With param mode=handoff, the harness's thread 0 (sid harness-0-*) waits in a pure-Python loop —
holding the GIL but for Python's own switching — until thread 1's call (harness-1-*) has set a flag,
and answers "handoff" = b"ok" (b"stuck" after 20 s). The gate must let thread 1 in meanwhile.
"""
import threading
import time

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperInit(self, config):
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.flag = False
        return 0

    def handoff(self, sid):
        if sid.startswith("harness-0-"):
            deadline = time.monotonic() + 20
            while not self.flag and time.monotonic() < deadline:
                pass  # holds the GIL, but for the interpreter's switching
            answer = b"ok" if self.flag else b"stuck"
        else:
            time.sleep(0.05)
            self.flag = True
            answer = b"set"
        out = ResponseData("handoff", 0, 3, 0)
        out.data = answer
        return Response(list=[out])

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        if params.get("mode") == "handoff":
            return self.handoff(params["sid"])
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(float(params.get("sleep_ms", "20")) / 1000)
        with self.lock:
            self.inside -= 1
            most = self.most
        out = ResponseData("overlap", 0, 3, 0)
        out.data = str(most).encode()
        return Response(list=[out])
