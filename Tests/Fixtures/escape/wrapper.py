"""Keeps (or copies) a numpy array made from a request view, as param "mode" says."""
import numpy as np

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData):
        if getattr(self, "kept", None) is not None and params.get("read_kept"):
            bytes(self.kept[:8])  # with data.lend, reading what an earlier call kept reads freed memory
        samples = np.frombuffer(reqData.list[0].view, dtype=np.uint8)
        mode = params.get("mode")
        if mode == "keep":
            self.kept = samples  # still exports the loader's buffer after the call
        elif mode == "slice":
            self.kept = reqData.list[0].view[1:]  # a memoryview sharing the loader's buffer
        elif mode == "copy":
            self.kept = samples.copy()
        out = ResponseData()
        out.key = "sum"
        out.setData(str(int(samples.sum())).encode())
        return Response(list=[out])
