"""Workloads for `aiges-harness bench` (scripts/bench.sh), chosen by the config key bench.workload.

  echo      returns the input node's bytes (node.data)            tiny echo, 16 MiB echo
  view      reads only node.view (first and last byte), 8 B out  large input, small output
  ignore    never reads the input node, 8 B out                  large input nobody reads
  prepared  returns a 16 MiB buffer made at init                 small input, large output
  empty     returns a node with no data                           empty output
  cpu       bench.cpu_loops rounds of Python arithmetic, 8 B out  CPU-bound calls (workers)
  device    one call of a device that serves one call at a time    dynamic batching (batch.*)
            and takes bench.device_ms (5) whatever the batch size,
            the GIL released while it waits, 8 B out per request

A request whose params carry bench.floor=N does not run the workload: it times N direct Python
calls of wrapperOnceExec on equivalent objects (the floor) and returns the timings as JSON.

wrapperOnceExecBatch (used with config batch.max_size > 1) serves a whole batch with one device call
for the device workload, and each request as wrapperOnceExec would for the others.
"""
import json
import threading
import time

from aiges_embed import DataListCls, DataListNode, Response, ResponseData

DataOnce = 3


class Wrapper:
    def wrapperInit(self, config):
        self.workload = getattr(self, config.get("bench.workload", "echo"))
        self.prepared = bytes(range(256)) * (65536)  # 16 MiB
        self.cpu_loops = int(config.get("bench.cpu_loops", "100000"))
        self.device_ms = float(config.get("bench.device_ms", "5"))
        self.device_lock = threading.Lock()
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        if "bench.floor" in params:
            return self.floor(int(params["bench.floor"]), reqData.list[0])
        return self.workload(reqData)

    @staticmethod
    def reply(key, data):
        out = ResponseData(key, 0, DataOnce, 0)
        out.data = data
        return Response(list=[out])

    def echo(self, reqData):
        node = reqData.list[0]
        return self.reply(node.key, node.data)

    def view(self, reqData):
        view = reqData.list[0].view
        return self.reply("check", bytes((view[0], view[-1])) * 4 if len(view) else b"\0" * 8)

    def ignore(self, reqData):
        return self.reply("check", b"\0" * 8)

    def prepared(self, reqData):
        return self.reply("prepared", self.prepared)

    def empty(self, reqData):
        return self.reply("empty", b"")

    def cpu(self, reqData):
        # A fixed amount of work holding the GIL throughout (a clock-based loop would "finish"
        # while other threads hold the GIL and measure nothing).
        total = 0
        for i in range(self.cpu_loops):
            total += i * i % 7
        return self.reply("check", total.to_bytes(8, "little"))

    def use_device(self):
        """A GPU-like call: one at a time, the same time for 1 request or a batch, the GIL released."""
        with self.device_lock:
            time.sleep(self.device_ms / 1000)

    def device(self, reqData):
        self.use_device()
        return self.reply("check", b"\0" * 8)

    def wrapperOnceExecBatch(self, requests):
        if self.workload != self.device:
            return [self.wrapperOnceExec(request.params, request.reqData) for request in requests]
        self.use_device()
        return [self.reply("check", b"\0" * 8) for _ in requests]

    def floor(self, calls, like):
        """Times wrapperOnceExec called straight from Python with objects like the plugin's."""
        payload = bytes(like.view)
        params = {"sid": "floor", "appid": "bench"}
        timings = []
        for _ in range(calls):
            request = DataListCls([DataListNode(like.key, memoryview(payload), len(payload), like.type, DataOnce, {})])
            start = time.perf_counter_ns()
            self.wrapperOnceExec(params, request, "floor", 0)
            timings.append(time.perf_counter_ns() - start)
        timings.sort()
        result = {"median_ns": timings[len(timings) // 2], "p99_ns": timings[min(len(timings) - 1, len(timings) * 99 // 100)]}
        return self.reply("floor", json.dumps(result).encode())
