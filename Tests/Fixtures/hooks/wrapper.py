"""Reports what the loader's metering and trace hooks returned."""
from aiges_embed import Response, ResponseData, callback_metric, callback_trace


class Wrapper:
    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        metric = callback_metric(usrTag, "calls", 3)
        trace = callback_trace(usrTag, "stage", "exec")
        out = ResponseData()
        out.key = "codes"
        out.setData(f"{metric},{trace}".encode())
        return Response(list=[out])
