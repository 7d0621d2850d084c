class Wrapper:
    def wrapperInit(self, config):
        raise RuntimeError("model file missing: /models/none.bin")

    def wrapperOnceExec(self, params, reqData):
        return None
