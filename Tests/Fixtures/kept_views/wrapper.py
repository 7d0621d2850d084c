"""Keeps views of loader input memory past the call, the ways real wrappers do, and reports them later.

Call 1 keeps on `self`: node.view, node.view[1:], memoryview(node.view), bytes(node.view), the
node itself and (if numpy imports) np.frombuffer(node.view, dtype=np.uint8). Every call returns
"tail" = node.view[2:] (a slice of the loader's buffer as output) and, from call 2 on, what it
kept, as bytes:

  kept_view         bytes(kept node.view)               == call 1's input
  kept_slice        bytes(kept node.view[1:])           == call 1's input[1:]
  kept_memoryview   bytes(kept memoryview(node.view))   == call 1's input
  kept_bytes        kept bytes(node.view)               == call 1's input
  kept_node_data    kept node.data                      == call 1's input
  kept_node_view    bytes(kept node.view)               == call 1's input
  kept_np           kept array .tobytes()               == call 1's input (only with numpy)
  numpy             b"yes" or b"no": whether numpy imported
"""
from aiges_embed import Response, ResponseData

try:
    import numpy as np
except ImportError:  # the test checks kept_np only when numpy is there
    np = None


def out(key, data):
    node = ResponseData()
    node.key = key
    node.setData(data)
    return node


class Wrapper:
    def wrapperInit(self, config):
        self.kept = None
        return 0

    def wrapperOnceExec(self, params, reqData, usrTag, persId):
        node = reqData.list[0]
        outputs = [out("tail", node.view[2:]), out("numpy", b"yes" if np is not None else b"no")]
        if self.kept is None:
            self.kept = {
                "view": node.view,
                "slice": node.view[1:],
                "memoryview": memoryview(node.view),
                "bytes": bytes(node.view),
                "node": node,
            }
            if np is not None:
                self.kept["np"] = np.frombuffer(node.view, dtype=np.uint8)
        else:
            kept = self.kept
            outputs += [
                out("kept_view", bytes(kept["view"])),
                out("kept_slice", bytes(kept["slice"])),
                out("kept_memoryview", bytes(kept["memoryview"])),
                out("kept_bytes", kept["bytes"]),
                out("kept_node_data", kept["node"].data),
                out("kept_node_view", bytes(kept["node"].view)),
            ]
            if "np" in kept:
                outputs.append(out("kept_np", kept["np"].tobytes()))
        return Response(list=outputs)
