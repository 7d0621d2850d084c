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

        `data` is the node's bytes as `bytes`, copied from the loader's buffer on first
        use (once); `view` is a read-only memoryview of them. Both stay valid for as long
        as you keep them, also after the call. A node nobody reads costs nothing, whatever
        its size. (With the plugin's opt-in `data.lend`, `view` is the loader's own buffer
        instead, valid during the call only.) `desc` is the node's metadata as a dict of str.
        """

        __slots__ = ("key", "_view", "_data", "_loan", "len", "type", "status", "desc")

        def __init__(self, key="", data=b"", len=None, type=DataText, status=DataOnce, desc=None):
            self.key = key
            self._loan = None
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
            if data is None:
                if self._loan is not None:
                    data = self._data = _native_copy(self._loan)
                elif self._view is not None:
                    data = self._data = self._view.tobytes()
            return data

        @data.setter
        def data(self, value):
            self._data, self._view, self._loan = value, None, None

        @property
        def view(self):
            """Read-only memoryview of the node's bytes."""
            view = self._view
            if view is None:
                data = self.data
                view = self._view = memoryview(data if data is not None else b"").toreadonly()
            return view

        def get_data(self):
            return self.data

        def _own(self):
            """Called by the plugin when the node outlives its call: copy the bytes if unread."""
            if self._data is None and self._loan is not None:
                self._data = _native_copy(self._loan)
            self._loan = None

        def _detach(self):
            """Called by the plugin (data.lend) when the node outlives its call: own the bytes, drop the view."""
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
            if data is None:
                self.len = 0
            elif isinstance(data, str):
                self.len = len(data.encode("utf-8", "surrogateescape"))
            else:
                self.len = memoryview(data).nbytes

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

        def _native_copy(loan):
            raise ValueError("request memory belongs to the plugin's process")


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
        """Writes aiges_embed's source to a folder of this user's on sys.path, so that child interpreters
        (multiprocessing spawn workers importing wrapper.py) can import it too. The folder must be one
        no other user can have made or written (see private_folder)."""
        import hashlib

        try:
            folder = os.path.join(private_folder(), hashlib.sha256(source.encode()).hexdigest()[:16])
            os.makedirs(folder, mode=0o700, exist_ok=True)
            path = os.path.join(folder, "aiges_embed.py")
            if not os.path.exists(path):
                temporary = f"{path}.{os.getpid()}"
                with open(temporary, "w", encoding="utf-8") as f:
                    f.write(source)
                os.replace(temporary, path)
            if folder not in sys.path:
                sys.path.append(folder)
        except OSError as error:
            logging.getLogger("aiges").warning("child processes cannot import aiges_embed: %s", error)


    def private_folder():
        """$TMPDIR/aiges-embed-<uid> if this user owns it and nobody else can write it (a real folder, not
        a link; made private if others could enter it); otherwise a new private folder for this process. Another local user who made
        that path first cannot get modules onto this plugin's sys.path."""
        import stat
        import tempfile

        shared = os.path.join(tempfile.gettempdir(), f"aiges-embed-{os.getuid()}")
        try:
            os.mkdir(shared, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return tempfile.mkdtemp(prefix="aiges-embed-")
        info = os.lstat(shared)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            if info.st_mode & 0o077:
                os.chmod(shared, 0o700)
            return shared
        logging.getLogger("aiges").warning(
            "%s is not a private folder of this user (owner uid %d, mode %o); using a folder of this process",
            shared, info.st_uid, stat.S_IMODE(info.st_mode))
        return tempfile.mkdtemp(prefix="aiges-embed-")


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
