class Wrapper:
    def wrapperInit(self, config):
        raise RuntimeError("model file missing: /models/none.bin")
