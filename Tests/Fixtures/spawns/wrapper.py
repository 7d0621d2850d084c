"""Uses multiprocessing (spawn) and subprocess, which need sys.executable to be a real Python."""
import multiprocessing
import subprocess
import sys

from aiges_embed import Response, ResponseData


def square(x):
    return x * x


class Wrapper:
    def wrapperInit(self, config):
        self.pool = multiprocessing.get_context("spawn").Pool(1)
        return 0

    def wrapperOnceExec(self, params, reqData):
        squares = self.pool.map(square, [2, 3, 4])
        child = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, check=True)
        out = ResponseData()
        out.key = "result"
        out.setData(f"{squares} {child.stdout.strip()} {sys.executable}".encode())
        return Response(list=[out])

    def wrapperFini(self):
        self.pool.terminate()
        self.pool.join()
        return 0
