// The Python source of the two modules the plugin provides before wrapper.py is imported:
//   aiges_embed   — the public names wrapper.py uses (python-api.md)
//   _aiges_plugin — private helpers the Swift side calls (loading, introspection, tracebacks)
// Native functions (`_native_*`) are injected into aiges_embed's namespace by EmbedModule.swift
// before this source runs.

/// Source of the `aiges_embed` module.
let aigesEmbedSource = #"""
    """Types and callbacks that wrapper.py imports from the AIGES plugin (libwrapper.so)."""
    import builtins as _builtins

    DataText, DataAudio, DataImage, DataVideo, DataPer = 0, 1, 2, 3, 4
    DataBegin, DataContinue, DataEnd, DataOnce = 0, 1, 2, 3
    Once = DataOnce


    class DataListNode:
        """One request node.

        `view` is a read-only memoryview over the loader's buffer, valid during the
        call; `data` is the same bytes as `bytes`, made on first use. A node kept
        past the call is given its own copy of the bytes when the call returns, and
        a view taken during the call raises ValueError once the call has returned.
        `desc` is the node's metadata as a dict of str.
        """

        __slots__ = ("key", "_view", "_data", "len", "type", "status", "desc")

        def __init__(self, key="", data=b"", len=None, type=DataText, status=DataOnce, desc=None):
            self.key = key
            if isinstance(data, memoryview):
                self._view, self._data = data, None
            else:
                self._view, self._data = None, data
            if len is None:
                len = 0 if data is None else memoryview(data).nbytes
            self.len = len
            self.type = type
            self.status = status
            self.desc = {} if desc is None else desc

        @property
        def data(self):
            data = self._data
            if data is None and self._view is not None:
                data = self._data = self._view.tobytes()
            return data

        @data.setter
        def data(self, value):
            self._data, self._view = value, None

        @property
        def view(self):
            """Read-only memoryview of the node's bytes (no copy)."""
            view = self._view
            if view is None:
                view = self._view = memoryview(self._data if self._data is not None else b"").toreadonly()
            return view

        def get_data(self):
            return self.data

        def _detach(self):
            """Called by the plugin when the node outlives its call: own the bytes, drop the loan."""
            view = self._view
            if view is not None and self._data is None:
                self._data = view.tobytes()
            self._view = None

        def __repr__(self):
            return f"DataListNode(key={self.key!r}, len={self.len}, type={self.type}, status={self.status})"


    class DataListCls:
        """A request: `list` holds DataListNode objects."""

        __slots__ = ("list",)

        def __init__(self, list=None):
            self.list = [] if list is None else list

        def get(self, key):
            for node in self.list:
                if node.key == key:
                    return node
            return None

        def __repr__(self):
            return f"DataListCls({self.list!r})"


    class ResponseData:
        """One output node. `data` may be bytes, bytearray, memoryview, str or any buffer (numpy)."""

        def __init__(self, key="", len=0, status=DataContinue, type=DataText, data=None, desc=None):
            self.key = key
            self.len = len
            self.status = status
            self.type = type
            self.data = data
            self.desc = desc

        def setData(self, data):
            self.data = data
            self.len = memoryview(data).nbytes if not isinstance(data, str) else _builtins.len(data.encode())

        def setDataType(self, type):
            self.type = type

        def __repr__(self):
            return f"ResponseData(key={self.key!r}, len={self.len}, status={self.status}, type={self.type})"


    class Response:
        """What wrapperOnceExec / wrapperRead return: `list` of ResponseData, `error_code` 0 = ok."""

        def __init__(self, list=None, error_code=0):
            self.list = [] if list is None else list
            self.error_code = error_code

        @staticmethod
        def response_err(code):
            return Response(error_code=code)

        def __repr__(self):
            return f"Response(error_code={self.error_code}, list={self.list!r})"


    class SessionCreateResponse:
        """What wrapperCreate returns: the session's `handle` (str) and `error_code`."""

        def __init__(self, handle="", error_code=0):
            self.handle = handle
            self.error_code = error_code


    def callback(response, tag):
        """Deliver an asynchronous result for `tag` (a usrTag, or a session's sid or handle)."""
        return _native_callback(response, tag)


    def callback_metric(usrTag, key, count):
        """Forward a metering count to the loader's wrapperMeterCustom hook."""
        return _native_metric(usrTag, key, count)


    def callback_trace(usrTag, key, value):
        """Forward a trace entry to the loader's wrapperTraceLog hook."""
        return _native_trace(usrTag, key, value)
    """#

/// Source of the private `_aiges_plugin` module.
let aigesPluginSource = #"""
    """Private helpers of libwrapper.so. Not an API."""
    import gc
    import importlib.util
    import inspect
    import os
    import sys
    import traceback


    def load_wrapper(path, class_name):
        """Import the file at `path` as a module named after it and return an instance of `class_name`."""
        path = os.path.abspath(path)
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
            cls = getattr(module, class_name, None)
            if cls is None:
                raise LookupError(f"{os.path.basename(path)} defines no class {class_name!r}")
            return cls()
        except BaseException:
            sys.modules.pop(name, None)
            raise


    def method(instance, name):
        """(bound method, [(parameter name lower-cased, has a default)], takes *args) for the method
        `name`, or None if the instance has none. A stub inherited unchanged from the SDK's
        aiges.sdk.WrapperBase counts as none: those raise NotImplementedError or return placeholders."""
        fn = getattr(instance, name, None)
        if fn is None or not callable(fn):
            return None
        owner = getattr(getattr(fn, "__func__", fn), "__qualname__", "").split(".")[0]
        if owner == "WrapperBase" and getattr(getattr(fn, "__func__", fn), "__module__", "") == "aiges.sdk":
            return None
        try:
            parameters = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return (fn, [], True)
        names = []
        for p in parameters:
            if p.kind == p.VAR_POSITIONAL:
                return (fn, names, True)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.append((p.name.lower(), p.default is not p.empty))
        return (fn, names, False)


    def container_references(obj):
        """How many references to `obj` GC-visible containers (dicts, lists, tuples, instances, frames)
        hold. References beyond these come from objects the GC cannot see, such as a numpy array whose
        base is `obj`."""
        here = sys._getframe()
        count = 0
        for holder in gc.get_referrers(obj):
            if holder is here:
                continue
            if isinstance(holder, dict):
                count += sum(1 for value in holder.values() if value is obj) + sum(1 for key in holder if key is obj)
            elif isinstance(holder, (list, tuple)):
                count += sum(1 for value in holder if value is obj)
            else:
                count += 1
        return count


    def describe(exc):
        """(one-line summary, full traceback) of an exception."""
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return summary, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    """#
