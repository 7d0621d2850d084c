"""Fixture for aiges-faults thread-exit: every call stores, in a threading.local(), an object whose
__del__ takes the GIL through the C API (PyGILState_Ensure / PyGILState_Release via ctypes).

That object dies when the calling loader thread's Python thread state is cleared, which happens
while the thread exits (the plugin's thread-state destructor): __del__ then runs inside that
teardown and asks for the GIL again. The process must still finish cleanly.

Answers "echo" = b"echo:" + the first input node's data. wrapperFini records "deleted N" (how many
__del__ ran) to the file named by config key "record".
"""
import ctypes
import threading

from aiges_embed import DataEnd, Response, ResponseData

api = ctypes.pythonapi
api.PyGILState_Ensure.restype = ctypes.c_int  # PyGILState_STATE is an enum
api.PyGILState_Ensure.argtypes = []
api.PyGILState_Release.restype = None
api.PyGILState_Release.argtypes = [ctypes.c_int]


class Canary:
    deleted = 0

    def __init__(self, name):
        self.name = name

    def __del__(self):
        state = api.PyGILState_Ensure()
        try:
            Canary.deleted += 1
        finally:
            api.PyGILState_Release(state)


class Wrapper:
    def wrapperInit(self, config):
        self.record_path = config.get("record")
        self.local = threading.local()
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        self.local.canary = Canary(usrTag)  # one per loader thread; dies with the thread's state
        out = ResponseData()
        out.key = "echo"
        out.setData(b"echo:" + (reqData.list[0].data if reqData.list else b""))
        out.status = DataEnd
        return Response(list=[out])

    def wrapperFini(self):
        if self.record_path:
            with open(self.record_path, "a") as f:
                f.write(f"deleted {Canary.deleted}\n")
        return 0
