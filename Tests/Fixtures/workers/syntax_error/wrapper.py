"""Worker-mode fixture: does not compile (a worker must fail wrapperInit with the SyntaxError)."""


class Wrapper:
    def wrapperInit(self, config)
        return 0
