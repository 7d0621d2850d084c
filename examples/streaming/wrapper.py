"""Streaming text analysis: per-session state and a worker thread, in either loader mode.

Each session owns a queue and a worker thread. wrapperWrite only queues the request
(the plugin gives queued nodes their own bytes, so the loader may free its buffers at
once); the worker upper-cases each chunk and counts words across chunk boundaries,
delivering every result with aiges_embed.callback(response, sid). The plugin routes
those to the loader's callback in push mode (asyncMode = true) and hands them out on
the next wrapperRead in pull mode — the same wrapper.py serves both.

Per chunk:      "upper"   the chunk upper-cased                      (status DataContinue)
After DataEnd:  "summary" JSON {chunks, bytes, words, sha256}        (status DataEnd)
Param "extra_after_end=1" sends one more result after DataEnd (the plugin drops it).
"""
import hashlib
import json
import queue
import threading

try:
    from aiges_embed import DataListCls, Response, ResponseData, SessionCreateResponse, callback
except ImportError:
    from aiges.dto import DataListCls, Response, ResponseData, SessionCreateResponse, callback

DataText = 0
DataBegin, DataContinue, DataEnd = 0, 1, 2


def result(key, data, status):
    out = ResponseData()
    out.key = key
    out.setDataType(DataText)
    out.setData(data)
    out.status = status
    return out


class Stream:
    """One session: its input queue, running totals and the worker that processes chunks."""

    def __init__(self, sid, extra_after_end):
        self.sid = sid
        self.extra_after_end = extra_after_end
        self.inbox = queue.Queue()
        self.sha = hashlib.sha256()
        self.chunks = self.bytes = self.words = 0
        self.in_word = False
        self.worker = threading.Thread(target=self.run, name=f"stream-{sid}", daemon=True)
        self.worker.start()

    def run(self):
        while True:
            request = self.inbox.get()
            if request is None:
                return
            finished = False
            for node in request.list:
                data = node.data  # the loader freed its buffer long ago: this is the node's own copy
                self.count(data)
                response = Response(list=[result("upper", data.upper(), DataContinue)])
                if node.status == DataEnd:
                    summary = {"chunks": self.chunks, "bytes": self.bytes, "words": self.words,
                               "sha256": self.sha.hexdigest()}
                    response.list.append(result("summary", json.dumps(summary).encode(), DataEnd))
                    finished = True
                callback(response, self.sid)
            if finished:
                if self.extra_after_end:
                    callback(Response(list=[result("late", b"after the end", DataContinue)]), self.sid)
                return

    def count(self, data):
        self.chunks += 1
        self.bytes += len(data)
        self.sha.update(data)
        for byte in data:
            space = byte in b" \t\r\n"
            if not space and not self.in_word:
                self.words += 1
            self.in_word = not space


class Wrapper:
    def wrapperInit(self, config: dict) -> int:
        self.streams = {}
        self.lock = threading.Lock()
        return 0

    def wrapperCreate(self, params: dict, sid: str, persId: int = 0, usrTag: str = "") -> SessionCreateResponse:
        with self.lock:
            self.streams[sid] = Stream(sid, params.get("extra_after_end") == "1")
        return SessionCreateResponse(handle=sid)

    def wrapperWrite(self, handle: str, req: DataListCls) -> int:
        self.streams[handle].inbox.put(req)  # read later by the worker thread
        return 0

    def wrapperDestroy(self, handle: str) -> int:
        with self.lock:
            stream = self.streams.pop(handle, None)
        if stream is not None:
            stream.inbox.put(None)
        return 0

    def wrapperDebugInfo(self, handle: str) -> str:
        stream = self.streams.get(handle)
        return f"streaming session {handle}: {stream.chunks if stream else 0} chunks processed"

    def wrapperFini(self) -> int:
        for handle in list(self.streams):
            self.wrapperDestroy(handle)
        return 0
