"""Keyword spotting written against the aiges SDK (aiges.sdk.WrapperBase), the way most authors do.

Needs the PyPI package `aiges` (and what its import pulls in) in a virtual environment given to
the plugin with config python.venv, and the working directory set to this folder: wrapperInit
reads resources/keywords.json relative to it, as many wrappers load their models.

    python3 -m venv /srv/venv && /srv/venv/bin/pip install aiges
    cd examples/sdk && ../../dist/aiges-harness -c wrapper.file=wrapper.py -c python.venv=/srv/venv \
        -p lang=en -i text="rain and wind, then a train"

One-shot: "result" holds the keywords found per topic. Sessions: text arrives in chunks; each read
returns the running count, and the final read (after a DataEnd chunk) the full result.
"""
import json
import os
import threading

from aiges.core.types import *
from aiges.sdk import StringBodyField, StringParamField, WrapperBase
from aiges.utils.log import log

try:
    from aiges_embed import DataListCls, Response, ResponseData, SessionCreateResponse, callback
except ImportError:
    from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse, callback


class UserRequest(object):
    params1 = StringParamField(key="lang", enums=["en"], value="en")
    input1 = StringBodyField(key="text", value=b"rain and wind")


class UserResponse(object):
    accept1 = StringBodyField(key="result")


class Wrapper(WrapperBase):
    serviceId = "keywords"
    version = "v1"
    requestCls = UserRequest()
    responseCls = UserResponse()

    def wrapperInit(self, config: {}) -> int:
        log.info("Initializing keyword spotter ...")
        with open(os.path.join("resources", "keywords.json"), encoding="utf-8") as f:
            self.topics = json.load(f)
        self.streams = {}
        self.lock = threading.Lock()
        return 0

    def spot(self, text):
        words = [w.strip(".,;:!?").lower() for w in text.split()]
        return {topic: sorted({w for w in words if w in keywords}) for topic, keywords in self.topics.items()
                if any(w in keywords for w in words)}

    def result(self, text, status, lang="en"):
        res = ResponseData()
        res.key = "result"
        res.setDataType(DataText)
        res.status = status
        res.setData(json.dumps({"lang": lang, "keywords": self.spot(text)}).encode("utf-8"))
        return res

    def wrapperOnceExec(self, params: {}, reqData: DataListCls, usrTag: str = "", persId: int = 0) -> Response:
        text = reqData.get("text").data.decode("utf-8")
        log.info("spotting keywords in %d characters", len(text))
        r = Response()
        r.list = [self.result(text, Once, params.get("lang", "en"))]
        return r

    def wrapperCreate(self, params: {}, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        with self.lock:
            self.streams[sid] = {"text": "", "ended": False, "lang": params.get("lang", "en")}
        s = SessionCreateResponse()
        s.handle = sid
        s.error_code = 0
        return s

    def wrapperWrite(self, handle: str, req: DataListCls, sid: str = "") -> int:
        stream = self.streams[handle]
        for node in req.list:
            stream["text"] += node.data.decode("utf-8")
            stream["ended"] = stream["ended"] or node.status == DataEnd
        return 0

    def wrapperRead(self, handle: str, sid: str = "") -> Response:
        stream = self.streams[handle]
        r = Response()
        r.list = [self.result(stream["text"], DataEnd if stream["ended"] else DataContinue, stream["lang"])]
        return r

    def wrapperDestroy(self, handle: str) -> int:
        with self.lock:
            self.streams.pop(handle, None)
        return 0

    def wrapperError(self, ret: int) -> str:
        return f"keywords: error {ret}"

    def wrapperFini(self) -> int:
        return 0
