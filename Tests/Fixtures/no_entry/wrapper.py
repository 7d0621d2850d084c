"""A class the loader could never call: none of wrapperOnceExec, wrapperOnceExecAsync, wrapperCreate."""


class Wrapper:
    def wrapperInit(self, config):
        return 0

    def wrapperOnceExce(self, params, reqData):
        return None
