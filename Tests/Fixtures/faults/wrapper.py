"""Fixture for aiges-faults (Tests/Faults): sessions, async requests and resources whose behaviour
the request params choose, and a record file (config key "record") of what wrapper.py saw, which
the driver reads back.

One-shot (wrapperOnceExec): "echo" = b"echo:" + the first input node's data. With param
"mode=count" instead (long-lists): "count" = how many request nodes, "keys" = how many distinct keys,
"crc" = zlib.crc32 (hex) over key + b"=" + data + b";" of every node in order, "params" = how many
params start with "p.", "pcrc" = the sum (mod 2**32, hex) of zlib.crc32 of "key=value" over those.

Async (wrapperOnceExecAsync), param "mode":
  pool          a Python thread delivers "result" = b"async:" + data with callback(resp, usrTag)
  never         never answers
  silent        never answers, records nothing and returns at once (for bursts of fast calls)
  deliver_ok    delivers "result" = b"done:" + data synchronously, then returns 0
  deliver_fail  delivers synchronously, then returns 5
  thread_fail   a Python thread delivers while the method still runs, then the method returns 5
  dup_sid       once two requests with the same sid are in: callback(resp, sid) (recorded:
                "dup_sid_ret CODE"), then each its own result b"for-" + usrTag + b":" + data by usrTag
  slow          sleeps "sleep_ms" (default 300; time.sleep releases the GIL), records
                "slow_return USRTAG RET" and returns param "ret" (default 0) without delivering
  spin          never answers, records nothing; the first such request starts a Python thread that
                keeps the GIL busy (a pure-Python loop) until wrapperFini or "spin_s" seconds (default
                5) passed (recorded: "spin_started")

Sessions (handle = sid), create param "deliver":
  none          wrapperWrite only records the write
  sync          wrapperWrite delivers "results" results (default 1) with callback(resp, usrTag)
                before returning: "result" = data + b"#i", the last one with status DataEnd
  thread        the same from a Python thread, "gap_ms" (default 20) apart
  pull4         callback(resp, sid) four times: "result" r1 (Continue), r2 (Continue),
                "other" o1 (Continue), "result" r3 (End)
  view          callback(resp, sid) of one node "echo" whose data is the first input node's
                node.view itself (with data.lend: the loader's own buffer), status DataEnd
                (recorded: "cb_ret view CODE")
  many          callback(resp, sid) once with "results" nodes (default 1) with distinct keys
                "key_prefix" (default "many-") + the index as 5 digits, data the index as text, the
                last one DataEnd (recorded: "cb_ret many CODE")
Create param "read_delivers=1": the session's first wrapperRead call delivers those same four results
with callback(resp, sid) (during the read); "raise_read=1": the first wrapperRead call then raises
(recorded "read_raise HANDLE"). A write of b"quiet" delivers nothing. Every callback() return code
is recorded ("cb_ret WHERE CODE").

Recorded lines: "init", "fini", "create SID", "destroy HANDLE", "load PATCH_ID", "unload PATCH_ID",
"async MODE USRTAG", "cb_ret ...", "dup_sid_ret CODE", "slow_return USRTAG RET", "spin_started".
"""
import threading
import time
import zlib

from aiges_embed import (DataContinue, DataEnd, Response, ResponseData, SessionCreateResponse,
                         callback)


def node(key, data, status=DataContinue):
    out = ResponseData()
    out.key = key
    out.setData(data)
    out.status = status
    return out


def first_data(reqData):
    return reqData.list[0].data if reqData.list else b""


class Wrapper:
    def wrapperInit(self, config):
        self.record_path = config.get("record")
        self.lock = threading.RLock()  # never held across callback(); re-entrant for nested calls
        self.sessions = {}
        self.resources = {}
        self.dups = {}
        self.spinner = None
        self.stop_spinning = threading.Event()
        self.record("init")
        return 0

    def record(self, *words):
        if not self.record_path:
            return
        with self.lock, open(self.record_path, "a") as f:
            f.write(" ".join(str(w) for w in words) + "\n")

    # --- one-shot

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        if params.get("mode") == "count":
            return self.count(params, reqData)
        return Response(list=[node("echo", b"echo:" + first_data(reqData), DataEnd)])

    def count(self, params, reqData):
        crc, keys = 0, set()
        for item in reqData.list:
            crc = zlib.crc32(item.key.encode() + b"=" + item.data + b";", crc)
            keys.add(item.key)
        pcount, pcrc = 0, 0
        for key, value in params.items():
            if key.startswith("p."):
                pcount += 1
                pcrc = (pcrc + zlib.crc32(f"{key}={value}".encode())) & 0xFFFFFFFF
        return Response(list=[node("count", b"%d" % len(reqData.list), DataEnd), node("keys", b"%d" % len(keys)),
                              node("crc", b"%08x" % crc), node("params", b"%d" % pcount),
                              node("pcrc", b"%08x" % pcrc)])

    def wrapperOnceExecAsync(self, params, reqData, usrTag, persId):
        mode = params.get("mode", "pool")
        if mode == "silent":
            return 0
        if mode == "spin":  # not recorded: file I/O would let go of the GIL once more per call
            with self.lock:
                if self.spinner is None:
                    self.spinner = threading.Thread(target=self.spin, args=(float(params.get("spin_s", "5")),),
                                                    daemon=True)
                    self.spinner.start()
                    self.record("spin_started")
            return 0
        data = first_data(reqData)
        self.record("async", mode, usrTag)
        if mode == "never":
            return 0
        if mode == "deliver_ok":
            self.record("cb_ret deliver_ok", callback(Response(list=[node("result", b"done:" + data)]), usrTag))
            return 0
        if mode == "deliver_fail":
            self.record("cb_ret deliver_fail", callback(Response(list=[node("result", b"fail:" + data)]), usrTag))
            return 5
        if mode == "thread_fail":
            started = threading.Event()

            def deliver():
                started.set()
                code = callback(Response(list=[node("result", b"fail:" + data)]), usrTag)
                self.record("cb_ret thread_fail", code)

            threading.Thread(target=deliver, daemon=True).start()
            started.wait(2)
            time.sleep(0.05)  # the delivery is in progress while this method is still running
            return 5
        if mode == "slow":
            time.sleep(int(params.get("sleep_ms", "300")) / 1000.0)
            ret = int(params.get("ret", "0"))
            self.record("slow_return", usrTag, ret)
            return ret
        if mode == "dup_sid":
            sid = params["sid"]
            with self.lock:
                waiting = self.dups.setdefault(sid, [])
                waiting.append((usrTag, data))
                ready = len(waiting) == 2
            if ready:
                threading.Thread(target=self.deliver_dups, args=(sid, list(waiting)), daemon=True).start()
            return 0
        # pool
        delay = int(params.get("delay_ms", "0")) / 1000.0

        def later():
            if delay:
                time.sleep(delay)
            code = callback(Response(list=[node("result", b"async:" + data)]), usrTag)
            self.record("cb_ret pool", code)

        threading.Thread(target=later, daemon=True).start()
        return 0

    def spin(self, seconds):
        """Keeps the GIL busy: other threads get it only at each switch interval (5 ms)."""
        deadline = time.monotonic() + seconds
        while not self.stop_spinning.is_set() and time.monotonic() < deadline:
            sum(range(1000))

    def deliver_dups(self, sid, waiting):
        code = callback(Response(list=[node("result", b"by-sid")]), sid)
        self.record("dup_sid_ret", code)
        for tag, data in waiting:
            code = callback(Response(list=[node("result", b"for-" + tag.encode() + b":" + data)]), tag)
            self.record("dup_tag_ret", tag, code)

    # --- sessions

    def wrapperCreate(self, params, sid, persId, usrTag):
        self.record("create", sid)
        with self.lock:
            self.sessions[sid] = {
                "usrTag": usrTag,
                "deliver": params.get("deliver", "none"),
                "results": int(params.get("results", "1")),
                "gap": int(params.get("gap_ms", "20")) / 1000.0,
                "raise_read": params.get("raise_read") == "1",
                "read_delivers": params.get("read_delivers") == "1",
                "key_prefix": params.get("key_prefix", "many-"),
            }
        return SessionCreateResponse(handle=sid)

    def wrapperWrite(self, handle, req, sid):
        session = self.sessions[handle]
        self.record("write", handle)
        if session["deliver"] == "view":  # before anything reads node.data
            self.record("cb_ret view", callback(Response(list=[node("echo", req.list[0].view, DataEnd)]), sid))
            return 0
        data = first_data(req)
        if data == b"quiet":
            return 0
        deliver = session["deliver"]
        if deliver == "sync":
            self.deliver_results(session, data, 0)
        elif deliver == "thread":
            threading.Thread(target=self.deliver_results, args=(session, data, session["gap"]), daemon=True).start()
        elif deliver == "pull4":
            self.deliver_pull4(sid)
        elif deliver == "many":
            count, prefix = session["results"], session["key_prefix"]
            nodes = [node("%s%05d" % (prefix, i), b"%d" % i, DataEnd if i == count - 1 else DataContinue)
                     for i in range(count)]
            self.record("cb_ret many", callback(Response(list=nodes), sid))
        return 0

    def deliver_pull4(self, sid):
        for key, value, status in (("result", b"r1", DataContinue), ("result", b"r2", DataContinue),
                                   ("other", b"o1", DataContinue), ("result", b"r3", DataEnd)):
            self.record("cb_ret pull4", callback(Response(list=[node(key, value, status)]), sid))

    def deliver_results(self, session, data, gap):
        count = session["results"]
        for i in range(count):
            if gap and i:
                time.sleep(gap)
            status = DataEnd if i == count - 1 else DataContinue
            response = Response(list=[node("result", data + b"#%d" % i, status)])
            self.record("cb_ret session", callback(response, session["usrTag"]))

    def wrapperRead(self, handle, sid):
        session = self.sessions.get(handle)
        if session is not None and session["read_delivers"]:
            session["read_delivers"] = False
            self.deliver_pull4(sid)
        if session is not None and session["raise_read"]:
            session["raise_read"] = False
            self.record("read_raise", handle)
            raise RuntimeError(f"wrapperRead of {handle} fails once, as asked")
        return Response()

    def wrapperDestroy(self, handle):
        self.record("destroy", handle)
        with self.lock:
            self.sessions.pop(handle, None)
        return 0

    def wrapperDebugInfo(self, handle):
        return f"faults debug {handle}"

    # --- personalisation

    def wrapperLoadRes(self, reqData, patch_id):
        self.record("load", patch_id)
        self.resources[patch_id] = first_data(reqData)
        return 0

    def wrapperUnloadRes(self, patch_id):
        self.record("unload", patch_id)
        return 0 if self.resources.pop(patch_id, None) is not None else 404

    def wrapperFini(self):
        self.stop_spinning.set()
        self.record("fini")
        return 0
