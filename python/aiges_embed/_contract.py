"""The plugin's contract checks, in Python, for the local runner. Not an API.

Each check mirrors the Swift code that applies it in libwrapper.so, with the same error codes and
texts: Response.swift (`OutputBatch`: a Response becomes output), InProcessEngine+Batch.swift (the
result of wrapperOnceExecBatch), Plugin+Sessions.swift (the handle from wrapperCreate),
UserWrapper.swift (argument planning by parameter name, status codes) and Errors.swift (codes and
their summaries). Change them together.
"""
import sys

DataBegin, DataContinue, DataEnd, DataOnce = 0, 1, 2, 3

# The plugin's own codes (Errors.swift `PluginErrorCode`) and the first part of their wrapperError text.
NOT_INITIALIZED = 22001
INIT_FAILED = 22002
INVALID_ARGUMENT = 22003
PYTHON_EXCEPTION = 22004
BAD_RETURN_TYPE = 22005
METHOD_MISSING = 22006
EMPTY_RESPONSE = 22007
INVALID_OUTPUT = 22008
UNKNOWN_HANDLE = 22009
ALREADY_INITIALIZED = 22011
TIMEOUT = 22012
INTERNAL_ERROR = 22013
HOOK_NOT_SET = 22014
RESULT_DROPPED = 22015
VIEW_ESCAPED = 22016
WORKER_LOST = 22017
SHUT_DOWN = 22018

SUMMARIES = {
    NOT_INITIALIZED: "plugin not initialised (wrapperInit not called or failed)",
    INIT_FAILED: "wrapperInit failed",
    INVALID_ARGUMENT: "invalid argument",
    PYTHON_EXCEPTION: "wrapper.py raised an exception",
    BAD_RETURN_TYPE: "wrapper.py returned the wrong type",
    METHOD_MISSING: "wrapper.py does not define this method",
    EMPTY_RESPONSE: "wrapper.py returned an empty response list",
    INVALID_OUTPUT: "invalid output node",
    UNKNOWN_HANDLE: "unknown or released handle",
    ALREADY_INITIALIZED: "already initialised",
    TIMEOUT: "request timed out",
    INTERNAL_ERROR: "internal error",
    HOOK_NOT_SET: "the loader set no hook of this kind (wrapperSetCtrl)",
    RESULT_DROPPED: "result dropped: unknown tag, or its request already ended",
    VIEW_ESCAPED: "wrapper.py kept a buffer of request memory past the call",
    WORKER_LOST: "the worker process serving the request was lost",
    SHUT_DOWN: "wrapperFini ended the request",
}

LEN_LIMIT = 0xFFFFFFFF  # DataList.len is an unsigned 32-bit field


class PluginError(Exception):
    """A failed call: `code` as the loader would see it.

    For the plugin's own codes `detail` says what went wrong and `text` is what wrapperError(code)
    returns; for wrapper.py's own codes (`is_plugin_code` false) the text comes from its wrapperError.
    """

    def __init__(self, code, detail=""):
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    @property
    def is_plugin_code(self):
        return self.code in SUMMARIES

    @property
    def text(self):
        """The plugin's wrapperError text for its own codes: "summary (code): detail"."""
        summary = SUMMARIES.get(self.code, f"wrapper.py error {self.code}")
        return f"{summary} ({self.code}): {self.detail}" if self.detail else f"{summary} ({self.code})"

    def __str__(self):
        return f"{self.code}: {self.text if self.is_plugin_code else self.detail}"


# ---- argument planning (UserWrapper.swift: CallArguments.Kind, WrapperMethod) ----

# Parameter names (lower-cased) seen in wrapper.py files for each value the plugin can pass.
KIND_NAMES = {
    "config": ("config", "cfg", "conf", "configs"),
    "code": ("ret", "code", "errnum", "err", "error_code", "errcode"),
    "params": ("params", "param", "parameters"),
    "reqData": ("reqdata", "req", "data", "datas", "request", "req_data", "perdata", "reqdatas"),
    "usrTag": ("usrtag", "usr_tag", "usertag", "user_tag", "tag"),
    "persId": ("persid", "pers_id", "psrid", "psrids", "psr_id"),
    "sid": ("sid", "session_id", "sessionid"),
    "handle": ("handle", "hdl", "session"),
    "patchId": ("patch_id", "patchid", "patch"),
    "resId": ("resid", "res_id", "resourceid", "resource_id"),
    "requests": ("requests", "reqs", "batch", "request_list", "requestlist"),
}

# The arguments of each method's newest form (python-api.md), in order.
NEWEST_FORM = {
    "wrapperInit": ("config",),
    "wrapperFini": (),
    "wrapperError": ("code",),
    "wrapperOnceExec": ("params", "reqData", "usrTag", "persId"),
    "wrapperOnceExecAsync": ("params", "reqData", "usrTag", "persId"),
    "wrapperCreate": ("params", "sid", "persId", "usrTag"),
    "wrapperWrite": ("handle", "reqData"),
    "wrapperRead": ("handle",),
    "wrapperDestroy": ("handle",),
    "wrapperDebugInfo": ("handle",),
    "wrapperLoadRes": ("reqData", "patchId"),
    "wrapperUnloadRes": ("patchId",),
    "wrapperOnceExecBatch": ("requests",),
}

# Values older forms may ask for by name beyond the newest form's.
ALSO_AVAILABLE = {
    "wrapperOnceExec": ("sid",),
    "wrapperOnceExecAsync": ("sid",),
    "wrapperWrite": ("sid",),
    "wrapperRead": ("sid",),
    "wrapperDestroy": ("sid",),
    "wrapperDebugInfo": ("sid",),
    "wrapperLoadRes": ("resId",),
    "wrapperUnloadRes": ("resId",),
}


ENTRY_METHODS = ("wrapperOnceExec", "wrapperOnceExecAsync", "wrapperCreate")


def check_entry_points(instance, class_name, file_name, defined, is_method, warn):
    """The plugin's load-time checks (UserWrapper.swift): a class defining none of ENTRY_METHODS
    (`defined` holds the names it does define) fails with 22002; a method named like an entry point
    that none is ("wrapperOnceExce") gets a warning naming the nearest one. `is_method(name)` tells
    whether `name` is a method of the author's (not an aiges SDK stub)."""
    if not any(name in defined for name in ENTRY_METHODS):
        raise PluginError(
            INIT_FAILED,
            f"{file_name}: class {class_name} defines none of wrapperOnceExec, wrapperOnceExecAsync, "
            "wrapperCreate: the loader could not call it")
    known = list(NEWEST_FORM)
    for name in sorted(dir(instance)):
        if name.lower().startswith("wrapper") and name not in known and is_method(name):
            nearest = min(known, key=lambda entry: (edit_distance(name, entry), known.index(entry)))
            warn(f"{class_name}.{name} is not an entry point the plugin calls; did you mean {nearest}?")


def edit_distance(a, b):
    """Insertions, deletions and substitutions that turn `a` into `b`."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a):
        current = [i + 1]
        for j, y in enumerate(b):
            current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x != y)))
        previous = current
    return previous[-1]


def plan_arguments(name, parameters, var_args, warn=None):
    """What to pass for each parameter of wrapper method `name`, as the plugin plans it once at load:
    a list of kinds (keys of KIND_NAMES), None for a parameter it has nothing for.

    `parameters` and `var_args` are what `_plugin.method()` found: [(name lower-cased, has default)]
    and whether the method takes *args (then it gets the newest form).
    """
    newest = NEWEST_FORM[name]
    if var_args:
        return list(newest)
    available = newest + ALSO_AVAILABLE.get(name, ())
    plan = []
    for index, (parameter, has_default) in enumerate(parameters):
        kind = next((kind for kind in available if parameter in KIND_NAMES[kind]), None)
        if kind is not None:
            plan.append(kind)
        elif has_default:
            break  # an optional parameter nothing is known for: left to its default
        elif index < len(newest):
            plan.append(newest[index])  # an unfamiliar name: the newest form's value at this place
        else:
            if warn is not None:
                warn(f'Wrapper.{name}: nothing to pass as parameter "{parameter}"; passing None')
            plan.append(None)
    return plan


# ---- values as the plugin reads them (PythonObjects.swift) ----


def type_name(value):
    """The C-level name of value's type (tp_name): "int", "Response", "numpy.ndarray"."""
    cls = type(value)
    if cls.__flags__ & (1 << 9) or cls.__module__ == "builtins":  # Py_TPFLAGS_HEAPTYPE: a class statement
        return cls.__name__
    return f"{cls.__module__}.{cls.__name__}"


def describe(value):
    """A short description of a value for error texts: its type, and its repr when that is short."""
    try:
        text = repr(value)
    except Exception:
        return type_name(value)
    if len(text.encode("utf-8", "backslashreplace")) > 40:
        return type_name(value)
    return f"{type_name(value)} {text}"


def exception_summary(error):
    """The one-line summary the plugin gives an exception ("ValueError: boom")."""
    import traceback

    return traceback.format_exception_only(type(error), error)[-1].strip()


def as_int32(value):
    """value as a 32-bit signed int, or None if it is not an int (bools are) or does not fit."""
    if isinstance(value, int) and -(1 << 31) <= value < (1 << 31):
        return int(value)
    return None


def as_uint32(value):
    """value as a 32-bit unsigned int, or None if it is not an int or does not fit."""
    if isinstance(value, int) and 0 <= value <= LEN_LIMIT:
        return int(value)
    return None


def encode_text(text):
    """text as UTF-8: surrogate escapes turn back into their bytes, other lone surrogates into \\udcxx."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


_MISSING = object()


def _required(item, name):
    """item.name; any failure to read it is badReturnType."""
    try:
        return getattr(item, name)
    except Exception as error:
        raise PluginError(BAD_RETURN_TYPE, f"reading .{name}: {exception_summary(error)}") from error


def _optional(item, name):
    """item.name, or _MISSING if it has no such attribute; other failures are invalidOutput."""
    try:
        return getattr(item, name)
    except AttributeError:
        return _MISSING
    except Exception as error:
        raise PluginError(INVALID_OUTPUT, f"reading .{name}: {exception_summary(error)}") from error


# ---- status codes and results ----


def check_code(result, method):
    """A method's result read as a status code: an int that fits in 32 bits (None counts as 0)."""
    if result is None:
        return 0
    code = as_int32(result)
    if code is None:
        raise PluginError(BAD_RETURN_TYPE, f"Wrapper.{method} returned {type_name(result)}, expected int")
    return code


class Output:
    """One output node as the loader would get it: key, type, status, the bytes (`data`, exactly
    `len` of them) and desc as (name, value) pairs."""

    __slots__ = ("key", "type", "status", "data", "desc")

    def __init__(self, key, type, status, data, desc):
        self.key, self.type, self.status, self.data, self.desc = key, type, status, data, desc

    @property
    def len(self):
        return len(self.data)

    def __repr__(self):
        return f"Output(key={self.key!r}, type={self.type}, status={self.status}, len={self.len})"


def check_response(response, once):
    """The output nodes of a `Response` from wrapperOnceExec (`once`: statuses become DataOnce, an
    empty list is an error) or from wrapperRead / a callback (statuses kept, empty means nothing yet).

    Raises PluginError with the plugin's code and text for anything the plugin refuses, and for a
    non-zero error_code (wrapper.py's own code).
    """
    code = as_int32(response)
    if code is not None:
        if code != 0:
            raise PluginError(code)
        raise PluginError(BAD_RETURN_TYPE, "expected a Response, got 0")
    items = _optional(response, "list")
    if items is _MISSING:
        raise PluginError(BAD_RETURN_TYPE, f"expected a Response, got {type_name(response)}")
    error_code = _optional(response, "error_code")
    if error_code is not _MISSING and error_code is not None:
        value = as_int32(error_code)
        if value is None:
            raise PluginError(
                BAD_RETURN_TYPE, f"Response.error_code must be an int that fits in 32 bits, got {describe(error_code)}")
        if value != 0:
            raise PluginError(value)
    if not isinstance(items, (list, tuple)):
        raise PluginError(BAD_RETURN_TYPE, f"Response.list must be a list of ResponseData, got {describe(items)}")
    items = tuple(items)  # a snapshot: property code run below cannot change what is walked
    if not items and once:
        raise PluginError(EMPTY_RESPONSE, "wrapperOnceExec returned a Response whose list is empty")
    return [_output(item, once) for item in items]


def _output(item, once):
    """One ResponseData as an Output, checked in the plugin's order (key, type, status, len, data, desc)."""
    key = _required(item, "key")
    if not isinstance(key, str):
        raise PluginError(INVALID_OUTPUT, f"ResponseData.key must be a str, got {describe(key)}")
    key_bytes = encode_text(key)
    if b"\0" in key_bytes:
        raise PluginError(INVALID_OUTPUT, f"ResponseData.key {describe(key)} contains a NUL character")
    name = key_bytes.decode("utf-8", "replace")  # as error texts show it
    node_type = _field(item, "type", name, 0)
    status = _field(item, "status", name, DataContinue)
    declared = _field(item, "len", name, 0)
    data, writable = _bytes(_required(item, "data"), name)
    if declared > len(data):
        raise PluginError(INVALID_OUTPUT, f'"{name}": len {declared} is larger than its data ({len(data)} bytes)')
    length = declared if declared > 0 else len(data)
    if length > LEN_LIMIT:
        raise PluginError(INVALID_OUTPUT, f'"{name}": {len(data)} bytes is over the 4 GiB limit of len')
    data = data[:length]
    if writable:
        data = bytes(data)  # copied once, as the plugin does: a wrapper thread may still change the buffer
    return Output(key, node_type, DataOnce if once else status, data, _desc(item, name))


def _field(item, attribute, name, default):
    """An unsigned 32-bit int attribute (None or missing: `default`)."""
    value = _optional(item, attribute)
    if value is _MISSING or value is None:
        return default
    number = as_uint32(value)
    if number is None:
        raise PluginError(
            INVALID_OUTPUT, f'"{name}": {attribute} must be an int from 0 to 4294967295, got {describe(value)}')
    return number


def _bytes(data, name):
    """The bytes an output's data lends, and whether its exporter lets them change: None is empty, str
    is UTF-8, any buffer its bytes (a view, not a copy, when the buffer is contiguous)."""
    if data is None:
        return b"", False
    if isinstance(data, str):
        return encode_text(data), False
    try:
        view = memoryview(data)
    except TypeError:
        raise PluginError(INVALID_OUTPUT, f'"{name}": data must be bytes-like or str, got {type_name(data)}') from None
    if not view.c_contiguous:
        return view.tobytes(), False  # made contiguous once
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view, not view.readonly


def _desc(item, name):
    """The node's desc dict as (str, str) pairs, or None."""
    desc = _optional(item, "desc")
    if desc is _MISSING or desc is None:
        return None
    if not isinstance(desc, dict):
        raise PluginError(INVALID_OUTPUT, f'"{name}": desc must be a dict')
    return [(_str(key), _str(value)) for key, value in list(desc.items())]


def _str(value):
    try:
        return str(value)
    except Exception:
        return ""


def check_batch(results, count):
    """The outcome of each request of a wrapperOnceExecBatch call that returned `results` for `count`
    requests: a list, in order, of a list of Output (its one-shot output) or a PluginError (its own
    failure: the Response's error_code, a bad output). Raises PluginError (22005) when `results` is
    not a list or tuple of `count` items: the whole batch fails."""
    if not isinstance(results, (list, tuple)):
        raise PluginError(
            BAD_RETURN_TYPE, f"Wrapper.wrapperOnceExecBatch returned {describe(results)}, expected a list of "
            f"{count} Response")
    results = tuple(results)
    if len(results) != count:
        raise PluginError(
            BAD_RETURN_TYPE, f"Wrapper.wrapperOnceExecBatch returned {len(results)} result(s) for {count} "
            "request(s): one Response each, in order")
    outcomes = []
    for index, result in enumerate(results):
        try:
            outcomes.append(check_response(result, once=True))
        except PluginError as error:
            if not error.is_plugin_code:
                outcomes.append(error)  # wrapper.py's own code
                continue
            detail = "a Response whose list is empty" if error.code == EMPTY_RESPONSE else error.detail
            outcomes.append(PluginError(
                error.code, f"Wrapper.wrapperOnceExecBatch, result {index + 1} of {count}: {detail}"))
    return outcomes


def session_handle(result):
    """The handle from wrapperCreate's result: a SessionCreateResponse (a non-zero error_code is the
    call's code) or, leniently, a plain str."""
    if isinstance(result, str):
        return result
    error_code = _optional(result, "error_code")
    if error_code is not _MISSING:
        code = as_int32(error_code)
        if code:
            raise PluginError(code)
    handle = _optional(result, "handle")
    if handle is _MISSING:
        raise PluginError(
            BAD_RETURN_TYPE, f"wrapperCreate returned {type_name(result)}, expected SessionCreateResponse")
    return handle if isinstance(handle, str) else str(handle)


def take_for_read(queue):
    """What one wrapperRead takes from `queue` (a list of Output or int error codes, oldest first,
    consumed in place): queued nodes in order up to the first repeated key, or one error code.
    Returns (outputs, error code or None)."""
    taken, keys = [], set()
    while queue:
        entry = queue[0]
        if isinstance(entry, int):
            if taken:
                break
            del queue[0]
            return [], entry
        if entry.key in keys:
            break
        keys.add(entry.key)
        taken.append(queue.pop(0))
    return taken, None


def warn(message):
    """A warning of the runner (the plugin logs these)."""
    print(f"warning: {message}", file=sys.stderr)
