class Wrapper:
    def wrapperInit(self, config):
        return 4321

    def wrapperError(self, ret):
        return f"licence check failed ({ret})"

    def wrapperOnceExec(self, params, reqData):
        return None
