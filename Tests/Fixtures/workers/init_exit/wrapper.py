"""Worker-mode fixture: the worker process exits in the middle of wrapperInit."""
import os


class Wrapper:
    def wrapperInit(self, config):
        os._exit(3)

    def wrapperOnceExec(self, params, reqData):
        return None
