"""Logs at every level, through its own basicConfig handler (with a timestamp) and the root logger."""
import logging

from aiges_embed import Response, ResponseData

log = logging.getLogger("levels")


class Wrapper:
    def wrapperInit(self, config):
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return 0

    def wrapperOnceExec(self, params, reqData):
        log.debug("a debug record")
        log.info("an info record")
        log.warning("a warning record")
        return Response(list=[ResponseData(key="ok", data=b"ok")])
