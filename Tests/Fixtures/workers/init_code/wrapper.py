"""Worker-mode fixture: wrapperInit returns a code of its own, explained by wrapperError."""


class Wrapper:
    def wrapperInit(self, config):
        return 4321

    def wrapperError(self, ret):
        return f"licence server refused this worker ({ret})"

    def wrapperOnceExec(self, params, reqData):
        return None
