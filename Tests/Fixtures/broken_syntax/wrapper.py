class Wrapper:
    def wrapperInit(self, config)
        return 0
