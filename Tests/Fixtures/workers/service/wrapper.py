"""Worker-mode fixture (Tests/PluginTests/WorkerTests.swift): an echo service that reports which
worker process served it, and that dies, hangs or fails on request.

Every one-shot request (sync or async) echoes its input nodes and adds a node "worker" with
"pid=<pid> res=<patch>:<data>,..." (the personalisation resources this process has loaded).

Request params (sessions: the params given to wrapperCreate):
  die_on=TOKEN      act only on a request (or session chunk) whose input data contains TOKEN
  die_once=PATH     act only if PATH exists; the first request to remove it acts (once per test,
                    whichever worker process serves it)
  how=exit:N        what acting means: os._exit(N) (default exit:7); "kill": SIGKILL itself;
                    "hold_gil": sleep 100 s in C while holding the GIL (only a watchdog ends that)
  die_later_ms=MS   act on a thread MS ms after the call returned (async: before its callback;
                    sessions: after the write returned, the session then gets no more results)
  sleep_ms=MS       sleep before answering (keeps several workers busy at once)
  code=N            answer with error code N (wrapperError(N) is "service wrapper says N")
  never=1           async: never call back
  hooks=1           call callback_metric and callback_trace, answering with their codes in "hooks"
"""
import ctypes
import os
import signal
import threading
import time

from aiges_embed import Response, ResponseData, SessionCreateResponse, callback, callback_metric, callback_trace

DataContinue, DataEnd, DataOnce = 1, 2, 3


def node(key, data, status=DataOnce):
    out = ResponseData()
    out.key = key
    out.setData(data)
    out.status = status
    return out


def should_act(params, datas):
    token = params.get("die_on")
    marker = params.get("die_once")
    if token is None and marker is None:
        return False
    if token is not None and not any(token.encode() in data for data in datas):
        return False
    if marker is not None:
        try:
            os.unlink(marker)
        except FileNotFoundError:
            return False
    return True


def act(how):
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "hold_gil":
        ctypes.PyDLL(None).sleep(100)  # PyDLL: the GIL stays held for the whole call
    else:
        os._exit(int(how.split(":", 1)[1]) if ":" in how else 7)
    time.sleep(100)  # SIGKILL is asynchronous: never answer


def maybe_act(params, datas):
    """Acts now, or on a thread later (die_later_ms); returns whether it will act later."""
    if not should_act(params, datas):
        return False
    how = params.get("how", "exit:7")
    later = params.get("die_later_ms")
    if later is None:
        act(how)
    threading.Timer(int(later) / 1000.0, act, args=(how,)).start()
    return True


class Wrapper:
    def wrapperInit(self, config):
        self.resources = {}
        self.sessions = {}
        return 0

    def wrapperLoadRes(self, reqData, patch_id):
        self.resources[patch_id] = reqData.list[0].data.decode()
        return 0

    def wrapperUnloadRes(self, patch_id):
        return 0 if self.resources.pop(patch_id, None) is not None else 404

    def answer(self, params, reqData, usrTag):
        if "sleep_ms" in params:
            time.sleep(int(params["sleep_ms"]) / 1000.0)
        code = int(params.get("code", "0"))
        if code:
            return Response.response_err(code)
        response = Response()
        for item in reqData.list:
            response.list.append(node(item.key, item.data))
        resources = ",".join(f"{key}:{value}" for key, value in sorted(self.resources.items()))
        response.list.append(node("worker", f"pid={os.getpid()} res={resources}".encode()))
        if params.get("hooks") == "1":
            metric = callback_metric(usrTag, "calls", 3)
            trace = callback_trace(usrTag, "stage", f"exec in {os.getpid()}")
            response.list.append(node("hooks", f"{metric},{trace}".encode()))
        return response

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        if maybe_act(params, [item.data for item in reqData.list]):
            time.sleep(100)
        return self.answer(params, reqData, usrTag)

    def wrapperOnceExecAsync(self, params, reqData, usrTag, persId):
        if params.get("never") == "1":
            return 0
        datas = [item.data for item in reqData.list]
        later = params.get("die_later_ms")
        if later is None:
            maybe_act(params, datas)  # in the method itself
        threading.Thread(target=self.later, args=(params, reqData, usrTag, datas), daemon=True).start()
        return 0

    def later(self, params, reqData, usrTag, datas):
        if params.get("die_later_ms") is not None and should_act(params, datas):
            time.sleep(int(params["die_later_ms"]) / 1000.0)
            act(params.get("how", "exit:7"))
        callback(self.answer(params, reqData, usrTag), usrTag)

    def wrapperError(self, ret):
        return f"service wrapper says {ret}"

    # Sessions: every chunk comes back by callback (push: to the loader; pull: on the next read).
    def wrapperCreate(self, params, sid, persId, usrTag):
        self.sessions[sid] = {"params": params, "chunks": 0, "doomed": False}
        return SessionCreateResponse(handle=sid)

    def wrapperWrite(self, handle, req):
        session = self.sessions[handle]
        if session["doomed"]:
            return 0
        if maybe_act(session["params"], [item.data for item in req.list]):
            session["doomed"] = True  # it dies later: no more results
            return 0
        session["chunks"] += 1
        response = Response()
        for item in req.list:
            response.list.append(node(item.key, item.data, item.status))
        callback(response, handle)
        return 0

    def wrapperDestroy(self, handle):
        self.sessions.pop(handle, None)
        return 0

    def wrapperDebugInfo(self, handle):
        session = self.sessions.get(handle)
        return f"service session {handle} in pid {os.getpid()}: {session['chunks'] if session else -1} chunks"

    def wrapperFini(self):
        return 0
