"""Types and callbacks that wrapper.py imports from the AIGES plugin (libwrapper.so).

The plugin runs this file (built into libwrapper.so) with its natives (`_native_*`) already in the
namespace. Installed with pip, it is importable anywhere (tests, editors); there the callbacks raise
RuntimeError, except under the local runner (`python3 -m aiges_embed run wrapper.py ...`), which
provides its own.
"""
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


class BatchRequest:
    """One request of a batch: what `wrapperOnceExecBatch(self, requests)` gets for each request.

    `params` (a dict of str that always has "sid"), `reqData` (a DataListCls), `usrTag` (str) and
    `persId` (int) are what `wrapperOnceExec(params, reqData, usrTag, persId)` would get for it;
    `sid` is `params["sid"]` as it was when the batch was made.
    """

    __slots__ = ("params", "reqData", "usrTag", "persId", "sid")

    def __init__(self, params=None, reqData=None, usrTag="", persId=0):
        self.params = {} if params is None else params
        self.reqData = DataListCls() if reqData is None else reqData
        self.usrTag = usrTag
        self.persId = persId
        self.sid = self.params.get("sid", "")

    def __repr__(self):
        return f"BatchRequest(sid={self.sid!r}, usrTag={self.usrTag!r}, reqData={self.reqData!r})"


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
except NameError:  # outside the plugin: pip-installed, or a child process importing the published copy

    def _outside_plugin(*args):
        raise RuntimeError(
            "aiges_embed callbacks only work in the process that loaded libwrapper.so "
            "(or under python3 -m aiges_embed run)")

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
