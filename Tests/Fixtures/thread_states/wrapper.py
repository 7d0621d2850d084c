"""Reports how many Python thread states the interpreter holds (through the C API, via ctypes)."""
import ctypes

from aiges_embed import Response, ResponseData

api = ctypes.pythonapi
api.PyInterpreterState_Get.restype = ctypes.c_void_p
api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
api.PyThreadState_Next.restype = ctypes.c_void_p
api.PyThreadState_Next.argtypes = [ctypes.c_void_p]


class Wrapper:
    def wrapperOnceExec(self, params, reqData):
        count, state = 0, api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
        while state:
            count += 1
            state = api.PyThreadState_Next(state)
        out = ResponseData()
        out.key = "thread_states"
        out.setData(str(count).encode())
        return Response(list=[out])
