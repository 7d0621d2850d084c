"""Logs through the logging module's functions (the root logger), as most wrapper.py files do."""
import logging

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData):
        logging.info("a module-level info record")
        logging.debug("a module-level debug record")
        logging.getLogger("named").info("a named info record")
        return Response(list=[ResponseData(key="ok", data=b"ok")])
