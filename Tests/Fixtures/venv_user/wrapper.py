"""Imports a package that exists only in the virtual environment given as python.venv."""
import sys

import venv_only_package

from aiges_embed import Response, ResponseData


class Wrapper:
    def wrapperOnceExec(self, params, reqData):
        out = ResponseData()
        out.key = "found"
        out.setData(f"{venv_only_package.GREETING} {sys.executable} {sys.prefix}".encode())
        return Response(list=[out])
