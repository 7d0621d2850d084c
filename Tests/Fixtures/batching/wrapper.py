"""Fixture for batching (config batch.max_size): wrapperOnceExecBatch answers each request with its
own input nodes echoed under their own keys (the harness's -e -u check), plus "via" = b"batch", and
checks that each request's params, usrTag and data belong together: the harness's sid harness-T-C and
usrTag tag-T-C (exec) or async-T-C (async) name the same T-C as the "#T-C" its -u appends to the data.

wrapperOnceExec answers the same with "via" = b"once" (served when batching is off).

Per request, param "mode" picks what happens:
  echo (default)   the echo
  fail             Response.error_code = int(param "code", 7): fails alone
  bad_output       an output whose data is an int: 22008 for it alone
  empty            a Response with an empty list: 22007 for it alone
  raise            the whole batch raises ValueError: 22004 for every request in it
  short            the batch returns one Response too few: 22005 for every request in it
  shared           the echo plus "shared": one bytes object every such answer lends (output memory
                   of one request must stay valid whatever another's wrapperExecFree does)
Config "fixture.sleep_ms" (or param "sleep_ms", the largest in the batch) sleeps that long in each
batch call, the GIL released, holding a lock: one call at a time, like a device.

Each call is recorded (config "record" names the file) as a line "batch N sid,sid,..." or "once sid";
wrapperFini records "fini".
"""
import threading
import time

from aiges_embed import Response, ResponseData, callback_metric

DataOnce = 3


class Wrapper:
    def wrapperInit(self, config):
        self.record_path = config.get("record")
        self.sleep_ms = float(config.get("fixture.sleep_ms", "0"))
        self.device = threading.Lock()
        self.record_lock = threading.Lock()
        self.shared = bytes(range(256)) * 64  # 16 KiB
        return 0

    def record(self, line):
        if self.record_path:
            with self.record_lock, open(self.record_path, "a") as f:
                f.write(line + "\n")

    @staticmethod
    def answer(params, reqData, usrTag, via):
        items = []
        for node in reqData.list:
            data = node.data
            # -u: the data ends in "#T-C", the sid is harness-T-C or sid-T-C and the usrTag ends in -T-C.
            if b"#" in data:
                mark = data.rsplit(b"#", 1)[1].decode()
                sid, tag = params.get("sid", ""), usrTag
                if not (sid.endswith("-" + mark) and tag.endswith("-" + mark)):
                    return Response.response_err(66)  # crossed wires: a request got another's parts
            out = ResponseData(node.key, 0, DataOnce, node.type)
            out.data = data
            items.append(out)
        via_node = ResponseData("via", 0, DataOnce, 0)
        via_node.data = via
        items.append(via_node)
        return Response(list=items)

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        self.record(f"once {params.get('sid', '')}")
        return self.answer(params, reqData, usrTag, b"once")

    def wrapperOnceExecBatch(self, requests):
        self.record(f"batch {len(requests)} " + ",".join(r.params.get("sid", "") for r in requests))
        modes = [r.params.get("mode", "echo") for r in requests]
        sleep_ms = max([self.sleep_ms] + [float(r.params.get("sleep_ms", "0")) for r in requests])
        if sleep_ms > 0:
            with self.device:
                time.sleep(sleep_ms / 1000)
        if "raise" in modes:
            raise ValueError(f"batch of {len(requests)} refused")
        results = []
        for request, mode in zip(requests, modes):
            if mode == "metric":  # the loader's meter hook runs on this batch's thread, inside the batch
                self.record(f"metric_ret {callback_metric(request.usrTag, 'batch', 1)}")
            if mode == "fail":
                results.append(Response(error_code=int(request.params.get("code", "7"))))
            elif mode == "bad_output":
                out = ResponseData("bad", 0, DataOnce, 0)
                out.data = 12345
                results.append(Response(list=[out]))
            elif mode == "empty":
                results.append(Response(list=[]))
            elif mode == "shared":
                response = self.answer(request.params, request.reqData, request.usrTag, b"batch")
                out = ResponseData("shared", 0, DataOnce, 0)
                out.data = self.shared
                response.list.append(out)
                results.append(response)
            else:
                results.append(self.answer(request.params, request.reqData, request.usrTag, b"batch"))
        if "short" in modes:
            results.pop()
        return results

    def wrapperFini(self):
        self.record("fini")
        return 0

    def wrapperError(self, code):
        return f"batching wrapper says {code}"
