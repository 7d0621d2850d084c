"""Audio level normaliser built on numpy.

Input: one node of PCM samples (desc "dtype": int16 by default, or float32).
Output:
  "stats"      JSON text: sample count, RMS and peak of the input, the gain applied
  "normalised" float32 samples scaled so the peak is 1.0 (the numpy array is handed to the
               loader as is; the plugin keeps it alive until the loader has copied it)

The input is read through `node.view`, a zero-copy view over the loader's buffer.
"""
import json

import numpy as np

try:
    from aiges_embed import DataListCls, Response, ResponseData
except ImportError:
    from aiges.dto import DataListCls, Response, ResponseData

DataText, DataAudio = 0, 1


class Wrapper:
    def wrapperInit(self, config: dict) -> int:
        self.target_peak = float(config.get("numpy.target_peak", "1.0"))
        return 0

    def wrapperOnceExec(self, params: dict, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        node = reqData.list[0] if reqData.list else None
        if node is None:
            return Response.response_err(10001)
        dtype = np.dtype(node.desc.get("dtype", "int16"))
        if node.len % dtype.itemsize:
            return Response.response_err(10002)
        samples = np.frombuffer(node.view, dtype=dtype).astype(np.float32)
        if dtype.kind == "i":
            samples /= float(np.iinfo(dtype).max)
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        rms = float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0
        gain = self.target_peak / peak if peak > 0 else 1.0
        normalised = samples * np.float32(gain)

        stats = ResponseData()
        stats.key = "stats"
        stats.setDataType(DataText)
        stats.setData(json.dumps({"samples": int(samples.size), "rms": rms, "peak": peak, "gain": gain}).encode())

        out = ResponseData()
        out.key = "normalised"
        out.setDataType(DataAudio)
        out.setData(normalised)
        out.desc = {"dtype": "float32"}
        return Response(list=[stats, out])

    def wrapperError(self, ret: int) -> str:
        return {10001: "numpy example: no input node", 10002: "numpy example: input length is not a whole number of samples"}.get(ret, f"numpy example error {ret}")

    def wrapperFini(self) -> int:
        return 0
