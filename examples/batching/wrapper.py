"""Dynamic batching: requests that arrive together are served by one model call.

With config batch.max_size (and batch.max_delay_us) the plugin gathers concurrent one-shot requests,
wrapperExec and wrapperExecAsync alike, into one call of wrapperOnceExecBatch(requests), and each
request gets its own Response back. Without those keys wrapperOnceExec serves each request alone.
After scripts/build.sh:
    dist/aiges-harness exec -c wrapper.file=examples/batching/wrapper.py -c batch.max_size=8 \
        -c batch.max_delay_us=2000 -t 8 -n 10 -i text=hello --stats
"""
import threading

try:
    from aiges_embed import Response, ResponseData
except ImportError:  # outside the plugin, e.g. unit-testing this file with the aiges SDK
    from aiges.dto import Response, ResponseData

DataOnce = 3
NO_TEXT = 10001


class Model:
    """Stands in for a model on a device: one call at a time, any number of inputs per call."""

    def __init__(self):
        self.lock = threading.Lock()

    def __call__(self, texts):
        with self.lock:
            return [text.upper() for text in texts]


class Wrapper:
    def wrapperInit(self, config: dict) -> int:
        self.model = Model()
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag="", persId=0):
        text = self.text(reqData)
        return self.answer(self.model([text])[0]) if text is not None else Response.response_err(NO_TEXT)

    def wrapperOnceExecBatch(self, requests):
        """One model call for the whole batch; one Response per request, in the same order. A request
        without a text node fails alone (its error_code); an exception would fail the whole batch."""
        texts = [self.text(request.reqData) for request in requests]
        outputs = iter(self.model([text for text in texts if text is not None]))
        return [self.answer(next(outputs)) if text is not None else Response.response_err(NO_TEXT) for text in texts]

    def wrapperError(self, ret: int) -> str:
        return "the request has no text node" if ret == NO_TEXT else f"error {ret}"

    @staticmethod
    def text(reqData):
        node = reqData.get("text")
        return None if node is None else node.data.decode("utf-8", "replace")

    @staticmethod
    def answer(text):
        out = ResponseData("upper", 0, DataOnce, 0)
        out.setData(text.encode("utf-8"))
        return Response(list=[out])
