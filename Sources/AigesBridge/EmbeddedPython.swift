// The Python source of the two modules the plugin provides before wrapper.py is imported:
//   aiges_embed   — the public names wrapper.py uses (python-api.md)
//   _aiges_plugin — private helpers the Swift side calls (loading, introspection, tracebacks)
// Native functions (`_native_*`) are injected into aiges_embed's namespace by EmbedModule.swift
// before this source runs.

/// Source of the `aiges_embed` module.
let aigesEmbedSource = #"""
    """Types and callbacks that wrapper.py imports from the AIGES plugin (libwrapper.so)."""
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
            self.len = memoryview(data).nbytes if not isinstance(data, str) else len(data.encode())

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


    try:
        _native_callback
    except NameError:  # a child process (multiprocessing) importing the file copy of this module

        def _outside_plugin(*args):
            raise RuntimeError("aiges_embed callbacks only work in the process that loaded libwrapper.so")

        _native_callback = _native_metric = _native_trace = _outside_plugin


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
    import io
    import logging
    import os
    import shutil
    import site
    import sys
    import threading
    import traceback


    def publish_embed_module(source):
        """Writes aiges_embed's source to a per-user cache folder on sys.path, so that child interpreters
        (multiprocessing spawn workers importing wrapper.py) can import it too."""
        import hashlib
        import tempfile

        folder = os.path.join(tempfile.gettempdir(), f"aiges-embed-{os.getuid()}",
                              hashlib.sha256(source.encode()).hexdigest()[:16])
        path = os.path.join(folder, "aiges_embed.py")
        try:
            if not os.path.exists(path):
                os.makedirs(folder, mode=0o700, exist_ok=True)
                temporary = f"{path}.{os.getpid()}"
                with open(temporary, "w", encoding="utf-8") as f:
                    f.write(source)
                os.replace(temporary, path)
            if folder not in sys.path:
                sys.path.append(folder)
        except OSError as error:
            logging.getLogger("aiges").warning("child processes cannot import aiges_embed: %s", error)


    def configure(venv, paths, executable, capture_output):
        """Applies python.venv, python.path, python.executable and output capture (before wrapper.py loads)."""
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        if venv:
            venv = os.path.abspath(venv)
            site_packages = os.path.join(venv, "lib", version, "site-packages")
            if not os.path.isdir(site_packages):
                raise ImportError(
                    f"python.venv {venv} has no lib/{version}/site-packages: it must be a venv of the Python "
                    f"this plugin embeds ({sys.version_info[0]}.{sys.version_info[1]})")
            before = list(sys.path)
            site.addsitedir(site_packages)  # also runs the venv's .pth files
            added = [entry for entry in sys.path if entry not in before]
            first_site = next((i for i, p in enumerate(before) if p.endswith(("site-packages", "dist-packages"))), len(before))
            sys.path[:] = before[:first_site] + added + before[first_site:]  # the venv's packages win, as when activated
            sys.prefix = sys.exec_prefix = venv
            executable = executable or os.path.join(venv, "bin", "python")
        for entry in reversed([p for p in paths if p]):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        sys.executable = executable or find_python(version)
        if "multiprocessing" in sys.modules:
            sys.modules["multiprocessing"].set_executable(sys.executable)
        if capture_output and not isinstance(sys.stdout, LineWriter):
            sys.stdout = LineWriter(logging.INFO, 1)
            sys.stderr = LineWriter(logging.WARNING, 2)
            logging.lastResort = PluginLogHandler(logging.DEBUG)


    def find_python(version):
        """A real interpreter of this Python, for sys.executable (multiprocessing, subprocess users)."""
        for candidate in (os.path.join(sys.base_prefix, "bin", version), os.path.join(sys.base_prefix, "bin", "python3"),
                          shutil.which(version), shutil.which("python3")):
            if candidate and os.access(candidate, os.X_OK):
                return candidate
        return sys.executable


    class LineWriter(io.TextIOBase):
        """Replaces sys.stdout / sys.stderr: each complete line goes to the plugin's log."""

        encoding = "utf-8"
        errors = "replace"

        def __init__(self, level, fd):
            self.level, self.fd, self.local = level, fd, threading.local()

        def writable(self):
            return True

        def write(self, text):
            pending = getattr(self.local, "pending", "") + str(text)
            *lines, self.local.pending = pending.split("\n")
            for line in lines:
                _native_log(self.level, line)
            return len(text)

        def flush(self):
            pending = getattr(self.local, "pending", "")
            if pending:
                self.local.pending = ""
                _native_log(self.level, pending)

        def fileno(self):
            return self.fd

        def isatty(self):
            return False


    class PluginLogHandler(logging.Handler):
        """A logging handler writing records to the plugin's log at their own level."""

        def emit(self, record):
            try:
                _native_log(record.levelno, self.format(record))
            except Exception:
                self.handleError(record)


    def adopt_log_handlers():
        """Root StreamHandlers writing to the captured stdout/stderr (the SDK adds one) log through the
        plugin instead, keeping their level and format."""
        root = logging.getLogger()
        for index, handler in enumerate(list(root.handlers)):
            if type(handler) is logging.StreamHandler and isinstance(handler.stream, LineWriter):
                replacement = PluginLogHandler(handler.level)
                replacement.setFormatter(handler.formatter)
                root.handlers[index] = replacement


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
