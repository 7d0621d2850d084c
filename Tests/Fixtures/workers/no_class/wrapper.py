"""Worker-mode fixture: defines no class Wrapper."""


class NotTheWrapper:
    def wrapperInit(self, config):
        return 0
