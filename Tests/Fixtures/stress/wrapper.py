"""Fixture for the aiges-faults `stress` scenario (Tests/Faults/scenarios_stress.c): every answer is
derived from the request's own input, params and usrTag, so the driver can tell cross-talk from a
correct answer; the request params choose the behaviour.

One-shot (wrapperOnceExec): "echo" = b"echo:" + the first node's data reversed, "sid" = params sid,
"tag" = usrTag.

Async (wrapperOnceExecAsync): "result" = b"async:" + data + b"|" + usrTag, delivered with
callback(resp, target) where target is the usrTag, or the sid with param "by=sid". Param "mode":
  thread (default)  from a new Python thread, after "delay_ms" (default 0)
  sync              inside the call, before it returns

Sessions (handle = "h-" + sid); create params: "by" = tag|sid|handle (what callback() is given:
the create usrTag, the sid or the handle), "push=1" (the driver passes a callback: results come from
the session's own Python thread), "results" (default 1) results per write, "gap_ms" (default 0) before
each, "track=1" (record "destroy HANDLE" when wrapperDestroy runs).
  pull: each wrapperWrite delivers, before it returns, one callback with two nodes "result" =
        data + b"#a" and data + b"#b" (the second DataEnd when the write's node is DataEnd); a write
        fails with callback()'s code if that is not 0
  push: each wrapperWrite queues its data; the session's thread delivers "results" results
        "result" = data + b"#i", the very last one (of a DataEnd write) DataEnd; wrapperDestroy stops
        the thread after what is queued (deliveries racing the destroy)

wrapperFini records "fini K=V ..." with counts (creates, destroys, live sessions, callback() return
codes).
"""
import collections
import queue
import threading
import time

from aiges_embed import DataContinue, DataEnd, Response, ResponseData, SessionCreateResponse, callback


def node(key, data, status=DataContinue):
    out = ResponseData()
    out.key = key
    out.setData(data)
    out.status = status
    return out


class Session:
    def __init__(self, usrTag, sid, handle, params):
        by = params.get("by", "tag")
        self.handle = handle
        self.target = {"tag": usrTag, "sid": sid, "handle": handle}[by]
        self.push = params.get("push") == "1"
        self.results = int(params.get("results", "1"))
        self.gap = int(params.get("gap_ms", "0")) / 1000.0
        self.track = params.get("track") == "1"
        self.queue = queue.SimpleQueue() if self.push else None


class Wrapper:
    def wrapperInit(self, config):
        self.record_path = config.get("record")
        self.lock = threading.Lock()
        self.sessions = {}
        self.stats = collections.Counter()
        return 0

    def record(self, line):
        if self.record_path:
            with self.lock, open(self.record_path, "a") as f:
                f.write(line + "\n")

    def count(self, what):
        with self.lock:
            self.stats[what] += 1

    # --- one-shot

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        data = reqData.list[0].data
        return Response(list=[node("echo", b"echo:" + data[::-1], DataEnd), node("sid", params["sid"].encode()),
                              node("tag", usrTag.encode())])

    def wrapperOnceExecAsync(self, params, reqData, usrTag, persId):
        data = reqData.list[0].data
        target = params["sid"] if params.get("by") == "sid" else usrTag
        response = Response(list=[node("result", b"async:" + data + b"|" + usrTag.encode())])
        if params.get("mode") == "sync":
            self.count("async_cb_%d" % callback(response, target))
            return 0
        delay = int(params.get("delay_ms", "0")) / 1000.0

        def later():
            if delay:
                time.sleep(delay)
            self.count("async_cb_%d" % callback(response, target))

        threading.Thread(target=later, daemon=True).start()
        return 0

    # --- sessions

    def wrapperCreate(self, params, sid, persId, usrTag):
        handle = "h-" + sid
        session = Session(usrTag, sid, handle, params)
        with self.lock:
            self.sessions[handle] = session
            self.stats["creates"] += 1
        if session.push:
            threading.Thread(target=self.pump, args=(session,), daemon=True).start()
        return SessionCreateResponse(handle=handle)

    def pump(self, session):
        while True:
            item = session.queue.get()
            if item is None:
                return
            data, last = item
            for i in range(session.results):
                if session.gap:
                    time.sleep(session.gap)
                final = last and i == session.results - 1
                response = Response(list=[node("result", data + b"#%d" % i, DataEnd if final else DataContinue)])
                self.count("push_cb_%d" % callback(response, session.target))

    def wrapperWrite(self, handle, req, sid):
        session = self.sessions[handle]
        first = req.list[0]
        data, last = first.data, first.status == DataEnd
        if session.push:
            session.queue.put((data, last))
            return 0
        response = Response(list=[node("result", data + b"#a"),
                                  node("result", data + b"#b", DataEnd if last else DataContinue)])
        code = callback(response, session.target)
        self.count("pull_cb_%d" % code)
        return code

    def wrapperRead(self, handle, sid):
        return Response()

    def wrapperDestroy(self, handle):
        with self.lock:
            session = self.sessions.pop(handle, None)
            self.stats["destroys"] += 1
        if session is None:
            return 0
        if session.push:
            session.queue.put(None)
        if session.track:
            self.record("destroy " + handle)
        return 0

    def wrapperDebugInfo(self, handle):
        return f"stress debug {handle}"

    def wrapperFini(self):
        with self.lock:
            stats = dict(self.stats, live=len(self.sessions))
        self.record("fini " + " ".join(f"{k}={v}" for k, v in sorted(stats.items())))
        return 0
