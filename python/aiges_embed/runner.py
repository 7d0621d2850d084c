"""Runs a wrapper.py without libwrapper.so and without the loader: the author's inner loop.

`python3 -m aiges_embed run wrapper.py ...` is the command line (see `python3 -m aiges_embed --help`);
`Runner` is the same thing for an author's own tests:

    from aiges_embed.runner import Node, Runner

    runner = Runner("wrapper.py")
    runner.init()
    outputs = runner.exec({"sid": "t-1"}, [Node("text", b"hello")])
    runner.fini()

The wrapper is loaded as the plugin loads it (its folder on sys.path, class `Wrapper` or
`wrapper.class`), each method gets its arguments by parameter name as the plugin plans them, and
every result goes through the plugin's contract checks, failing with the plugin's codes and texts
(`PluginError`). `aiges_embed.callback`, `callback_metric` and `callback_trace` work while a Runner
is initialised.
"""
import os
import sys
import threading
import time

import aiges_embed
from aiges_embed import BatchRequest, DataListCls, DataListNode
from aiges_embed import _contract as contract
from aiges_embed import _plugin
from aiges_embed._contract import DataBegin, DataContinue, DataEnd, DataOnce, PluginError

__all__ = ["Node", "Output", "PluginError", "Runner", "SessionResult", "pattern", "print_outputs", "write_outputs"]

Output = contract.Output


class Node:
    """An input node as the loader sends it: key, bytes, type, status and desc (str to str)."""

    __slots__ = ("key", "data", "type", "status", "desc")

    def __init__(self, key, data=b"", type=0, status=DataOnce, desc=None):
        self.key, self.type, self.status = key, type, status
        self.data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
        self.desc = dict(desc or {})

    def with_status(self, status):
        return Node(self.key, self.data, self.type, status, self.desc)

    def __repr__(self):
        return f"Node(key={self.key!r}, len={len(self.data)}, type={self.type}, status={self.status})"


class SessionResult:
    """What one session produced: each result (a list of Output, in arrival order), whether a final
    one (DataEnd or DataOnce) came, and wrapperDebugInfo's text if the wrapper defines it."""

    def __init__(self):
        self.results = []
        self.finished = False
        self.debug = None

    @property
    def outputs(self):
        """All output nodes, in order."""
        return [output for result in self.results for output in result]

    def data(self, key):
        """The bytes of every node with `key`, concatenated."""
        return b"".join(bytes(output.data) for output in self.outputs if output.key == key)


class _Target:
    """Where results delivered with aiges_embed.callback go: one async request or one session."""

    def __init__(self, once, tags, push):
        self.once = once
        self.tags = set(tags)
        self.push = push
        self.closed = False  # a final result came: later deliveries are dropped
        self.results = []  # one-shot and push: each delivery's outputs (pull sessions read from `queue`)
        self.queue = []  # pull sessions: Output nodes and error codes waiting for a read
        self.error = None  # a delivery that failed its checks (PluginError)


class Runner:
    """One loaded wrapper.py (see the module doc). Not thread-safe except for the callbacks."""

    def __init__(self, path, config=None, class_name=None):
        self.path = path
        self.config = dict(config or {})
        self.config.setdefault("wrapper.file", path)
        self.class_name = class_name or self.config.get("wrapper.class") or "Wrapper"
        self.instance = None
        self.methods = {}  # name -> (bound method, argument plan)
        self._targets = []
        self._changed = threading.Condition()
        self._saved_natives = None

    # ---- lifecycle ----

    def init(self):
        """Loads the wrapper and calls its wrapperInit(config), failing as the plugin's wrapperInit does."""
        if self.instance is not None:
            raise PluginError(contract.ALREADY_INITIALIZED, "call wrapperFini before wrapperInit again")
        try:
            open(self.path, "rb").close()
        except OSError as error:
            reason = f"wrapper.file {self.path} cannot be read: {error.strerror}"
            raise PluginError(contract.INIT_FAILED, reason) from None
        # python.venv and python.path as the plugin applies them; sys.executable stays this Python
        # (or the venv's, or python.executable) and output is not captured.
        venv = self.config.get("python.venv") or None
        paths = [entry for entry in self.config.get("python.path", "").split(":") if entry]
        executable = self.config.get("python.executable") or (None if venv else sys.executable)
        try:
            _plugin.configure(venv, paths, executable, False)
        except (Exception, SystemExit) as error:
            raise _python_error(contract.INIT_FAILED, "configuring the Python environment", error)
        self._install_natives()
        try:
            try:
                instance = _plugin.load_wrapper(self.path, self.class_name)
            except (Exception, SystemExit) as error:
                error.__traceback__ = error.__traceback__.tb_next  # from the plugin's own helper on
                raise _python_error(contract.INIT_FAILED, f"cannot load {self.path}", error) from None
            methods = {}
            for name in contract.NEWEST_FORM:
                found = _plugin.method(instance, name)
                if found is not None:
                    function, parameters, var_args = found
                    methods[name] = (function, contract.plan_arguments(name, parameters, var_args, contract.warn))
            contract.check_entry_points(
                instance, self.class_name, os.path.basename(self.path), methods,
                lambda name: _plugin.method(instance, name) is not None, contract.warn)
            self.instance, self.methods = instance, methods
            if "wrapperInit" in methods:
                try:
                    code = self._call_for_code("wrapperInit", config=dict(self.config))
                except PluginError as error:
                    raise PluginError(contract.INIT_FAILED, f"{self.path}: {error.detail}") from error
                if code != 0:
                    text = self.error_text(code)
                    self.instance, self.methods = None, {}
                    raise PluginError(code, text)
        except BaseException:
            self.instance, self.methods = None, {}
            self._restore_natives()
            raise

    def fini(self):
        """Calls wrapperFini() (if defined) and unloads the wrapper; callbacks stop working."""
        self._require_running()
        try:
            code = self._call_for_code("wrapperFini") if "wrapperFini" in self.methods else 0
            text = self.error_text(code) if code else ""
        finally:
            with self._changed:
                self._targets.clear()
            self.instance, self.methods = None, {}
            self._restore_natives()
        if code != 0:
            raise PluginError(code, text)

    def defines(self, name):
        """Whether the loaded wrapper defines method `name` (an unchanged aiges.sdk WrapperBase stub does not)."""
        return name in self.methods

    def error_text(self, code):
        """What wrapperError(code) returns for one of wrapper.py's codes."""
        if "wrapperError" not in self.methods:
            return f"wrapper.py error {code}"
        try:
            result = self.call("wrapperError", code=code)
        except PluginError:
            return f"wrapper.py error {code} (its wrapperError failed)"
        return result if isinstance(result, str) else _text(result, f"wrapper.py error {code}")

    def describe(self, error):
        """The text wrapperError gives for a failed call: the plugin's own for its codes, else wrapper.py's."""
        return error.text if error.is_plugin_code else (error.detail or self.error_text(error.code))

    # ---- one-shot ----

    def exec(self, params, nodes, usr_tag="tag-0", pers_id=0):
        """wrapperOnceExec(params, reqData, usrTag, persId): its output nodes (status DataOnce)."""
        self._require_running()
        params = _params(params)
        request = _request(nodes)
        result = self.call(
            "wrapperOnceExec", params=params, reqData=request, usrTag=usr_tag, persId=pers_id, sid=params["sid"])
        return contract.check_response(result, once=True)

    def exec_batch(self, requests):
        """wrapperOnceExecBatch(requests) with one aiges_embed.BatchRequest per item of `requests`, each
        a tuple (params, nodes, usr_tag, pers_id) — what exec() takes — as the plugin gathers them with
        config batch.max_size. Returns, in order, each request's outputs (a list of Output) or its own
        PluginError (a non-zero error_code, a bad output). Raises PluginError when the whole batch fails
        (the method raised: 22004; it did not return one Response per request: 22005)."""
        self._require_running()
        if not self.defines("wrapperOnceExecBatch"):
            raise self._missing("wrapperOnceExecBatch")
        batch = []
        for params, nodes, usr_tag, pers_id in requests:
            params = _params(params)
            batch.append(BatchRequest(params, _request(nodes), usr_tag, pers_id))
        return contract.check_batch(self.call("wrapperOnceExecBatch", requests=batch), len(batch))

    def exec_async(self, params, nodes, usr_tag="async-0", pers_id=0, wait_ms=10000):
        """wrapperOnceExecAsync(params, reqData, usrTag, persId), then its one final result delivered
        with aiges_embed.callback(resp, usrTag or sid). A wrapper without wrapperOnceExecAsync is served
        by its wrapperOnceExec, as the plugin does. No result within `wait_ms`: 22012."""
        self._require_running()
        native = self.defines("wrapperOnceExecAsync")
        if not native and not self.defines("wrapperOnceExec"):
            raise self._missing("wrapperOnceExecAsync")
        params = _params(params)
        request = _request(nodes)
        target = self._register(_Target(once=True, tags=[usr_tag, params["sid"]], push=True))
        try:
            arguments = dict(params=params, reqData=request, usrTag=usr_tag, persId=pers_id, sid=params["sid"])
            if native:
                code = self._call_for_code("wrapperOnceExecAsync", **arguments)
                if code != 0:
                    raise PluginError(code, self.error_text(code))
            else:
                self._deliver(self.call("wrapperOnceExec", **arguments), target)
            if not self._wait(lambda: target.closed, wait_ms):
                raise PluginError(contract.TIMEOUT, f"no result for {usr_tag} within {wait_ms} ms")
            if target.error is not None:
                raise target.error
            return target.results[0]
        finally:
            self._unregister(target)

    # ---- sessions ----

    def session(
        self, params, chunks, usr_tag="session-0", push=False, wait_ms=10000, poll_ms=50, sid=None, pers_id=0
    ):
        """One session as the loader drives it: wrapperCreate(params, sid, persId, usrTag), one
        wrapperWrite(handle, req) per chunk (statuses DataBegin, DataContinue…, DataEnd; a single chunk
        is DataEnd), results by wrapperRead (pull) or by callback only (`push`) until a final one,
        wrapperDebugInfo, wrapperDestroy. Returns a SessionResult; a failed call raises PluginError
        (after closing the session); no final result within `wait_ms` is not an error here: check
        `finished`."""
        self._require_running()
        if not self.defines("wrapperCreate"):
            raise self._missing("wrapperCreate")
        params = _params(params, sid)
        sid = params["sid"]
        target = self._register(_Target(once=False, tags=[usr_tag, sid], push=push))
        outcome = SessionResult()
        try:
            result = self.call("wrapperCreate", params=params, sid=sid, persId=pers_id, usrTag=usr_tag)
            handle = contract.session_handle(result)
        except BaseException:
            self._unregister(target)
            raise
        with self._changed:
            target.tags.add(handle)
        arguments = dict(handle=handle, sid=sid)
        try:
            for index, chunk in enumerate(chunks):
                status = DataEnd if index == len(chunks) - 1 else DataBegin if index == 0 else DataContinue
                code = self._call_for_code("wrapperWrite", reqData=_request([chunk.with_status(status)]), **arguments)
                if code != 0:
                    raise PluginError(code, self.error_text(code))
                if not push and not outcome.finished:
                    self._read(target, arguments, outcome)
            deadline = time.monotonic() + wait_ms / 1000
            if push:
                self._wait(lambda: target.closed, wait_ms)
                with self._changed:
                    outcome.results.extend(target.results)
                    outcome.finished = target.closed
            else:
                while not outcome.finished and time.monotonic() < deadline:
                    self._read(target, arguments, outcome)
                    if not outcome.finished:
                        time.sleep(poll_ms / 1000)
            if target.error is not None:
                raise target.error
            if self.defines("wrapperDebugInfo"):
                outcome.debug = _text(self.call("wrapperDebugInfo", **arguments), "")
        except BaseException:
            try:
                self._destroy(target, arguments)
            except PluginError:
                pass  # the first failure is the one reported
            raise
        self._destroy(target, arguments)
        return outcome

    def _destroy(self, target, arguments):
        """Closes a session: no callback for it is taken any more, then wrapperDestroy(handle) if defined."""
        self._unregister(target)
        if self.defines("wrapperDestroy"):
            code = self._call_for_code("wrapperDestroy", **arguments)
            if code != 0:
                raise PluginError(code, self.error_text(code))

    def _read(self, target, arguments, outcome):
        """One wrapperRead of a pull session: queued callback results first, else wrapper.py's own."""
        with self._changed:
            queued = bool(target.queue)
        if not queued and self.defines("wrapperRead"):
            result = self.call("wrapperRead", **arguments)
            if result is not None:
                outputs = contract.check_response(result, once=False)
                with self._changed:
                    target.queue.extend(outputs)
        with self._changed:
            outputs, code = contract.take_for_read(target.queue)
        if code is not None:  # a delivered result that failed its checks
            raise target.error or PluginError(code)
        if outputs:
            outcome.results.append(outputs)
            outcome.finished = any(output.status in (DataEnd, DataOnce) for output in outputs)

    # ---- calls ----

    def call(self, name, **values):
        """Calls method `name` with what its plan asks for among `values` (kinds of
        contract.KIND_NAMES); an exception becomes 22004 with its traceback on stderr."""
        found = self.methods.get(name)
        if found is None:
            raise self._missing(name)
        function, plan = found
        try:
            return function(*[values.get(kind) if kind else None for kind in plan])
        except (Exception, SystemExit) as error:
            error.__traceback__ = error.__traceback__.tb_next  # from wrapper.py's frame on, as the plugin shows it
            raise _python_error(contract.PYTHON_EXCEPTION, f"Wrapper.{name}", error, values.get("sid")) from None

    def _call_for_code(self, name, **values):
        return contract.check_code(self.call(name, **values), name)

    def _missing(self, name):
        return PluginError(contract.METHOD_MISSING, f"{os.path.basename(self.path)} defines no Wrapper.{name}")

    def _require_running(self):
        if self.instance is None:
            raise PluginError(contract.NOT_INITIALIZED, "call wrapperInit first (or it failed: see its error)")

    # ---- callbacks ----

    def _install_natives(self):
        """Routes aiges_embed.callback / callback_metric / callback_trace to this runner."""
        names = ("_native_callback", "_native_metric", "_native_trace")
        self._saved_natives = {name: getattr(aiges_embed, name) for name in names}
        aiges_embed._native_callback = self._native_callback
        aiges_embed._native_metric = _native_metric
        aiges_embed._native_trace = _native_trace

    def _restore_natives(self):
        for name, function in (self._saved_natives or {}).items():
            setattr(aiges_embed, name, function)
        self._saved_natives = None

    def _native_callback(self, response, tag):
        """aiges_embed.callback(response, tag): tag is a live request's usrTag or sid, or a session's handle."""
        tag = tag if isinstance(tag, str) else _text(tag, "")
        with self._changed:
            found = [target for target in self._targets if tag in target.tags]
        if len(found) != 1:
            contract.warn(f'callback for unknown or finished tag "{tag}" dropped')
            return contract.RESULT_DROPPED
        return self._deliver(response, found[0])

    def _deliver(self, response, target):
        """Checks `response` and offers it to `target`; returns what callback() returns."""
        try:
            outputs, error = contract.check_response(response, once=target.once), None
        except PluginError as failure:
            outputs, error = None, failure
            contract.warn(f"result for {sorted(target.tags)[0]} failed: {failure}")
        final = target.once or error is not None or any(o.status in (DataEnd, DataOnce) for o in outputs)
        with self._changed:
            if target.closed:
                contract.warn("result dropped: it came after the request's final result")
                return contract.RESULT_DROPPED
            if error is not None:
                target.error = error
                target.queue.append(error.code)
            elif target.push or target.once:
                target.results.append(outputs)
            else:
                target.queue.extend(outputs)
            target.closed = final
            self._changed.notify_all()
        return 0

    def _register(self, target):
        with self._changed:
            self._targets.append(target)
        return target

    def _unregister(self, target):
        with self._changed:
            if target in self._targets:
                self._targets.remove(target)

    def _wait(self, condition, wait_ms):
        with self._changed:
            return self._changed.wait_for(condition, timeout=wait_ms / 1000)


def _native_metric(usrTag, key, count):
    """aiges_embed.callback_metric under the runner: printed as the harness's --hooks prints it."""
    if not isinstance(usrTag, str) or not isinstance(key, str) or contract.as_int32(count) is None:
        raise TypeError("expected callback_metric(usrTag: str, key: str, count: int)")
    print(f"hook meter usrTag={usrTag} key={key} count={count}", flush=True)
    return 0


def _native_trace(usrTag, key, value):
    """aiges_embed.callback_trace under the runner: printed as the harness's --hooks prints it."""
    if not all(isinstance(item, str) for item in (usrTag, key, value)):
        raise TypeError("expected callback_trace(usrTag: str, key: str, value: str)")
    print(f"hook trace usrTag={usrTag} key={key} value={value}", flush=True)
    return 0


def _python_error(code, context, error, sid=None):
    """A Python exception as the plugin reports it: code with "context: Type: message", traceback on stderr."""
    summary, traceback = _plugin.describe(error)
    where = f" [sid {sid}]" if isinstance(sid, str) and sid else ""
    print(f"error{where}: {context}: {summary}\n{traceback.rstrip()}", file=sys.stderr)
    return PluginError(code, f"{context}: {summary}")


def _text(value, fallback):
    try:
        return str(value)
    except Exception:
        return fallback


def _params(params, sid=None):
    """Request params as wrapper.py gets them: a dict of str that always has "sid"."""
    params = {str(key): str(value) for key, value in dict(params or {}).items()}
    params.setdefault("sid", sid if sid is not None else "")
    return params


def _request(nodes):
    """Input nodes as a DataListCls of DataListNode (each holding its own bytes)."""
    return DataListCls(
        [DataListNode(node.key, node.data, len(node.data), node.type, node.status, dict(node.desc)) for node in nodes])


# ---- what the command line shares with the harness ----


def pattern(size):
    """The bytes `gen:SIZE` makes: the low byte of each step of xorshift32 from a fixed seed, exactly
    as aiges-harness (and the Swift tests' harnessPattern) make them."""
    out = bytearray(size)
    state = 2463534242
    mask = 0xFFFFFFFF
    for index in range(size):
        state ^= (state << 13) & mask
        state ^= state >> 17
        state ^= (state << 5) & mask
        out[index] = state & 0xFF
    return bytes(out)


def _shown(data):
    """The first 64 bytes as the harness prints them: printable ASCII as is, the rest \\xNN."""
    shown = bytes(data[:64])
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in shown)
    return f'"{text}"' + ("..." if len(data) > 64 else "")


def print_outputs(outputs, indent="  ", file=None, start=0):
    """Prints output nodes exactly as aiges-harness prints them."""
    for index, output in enumerate(outputs, start):
        desc = "".join(f" desc.{name}={value}" for name, value in output.desc or ())
        key = output.key.encode("utf-8", "backslashreplace").decode("utf-8")
        print(
            f"{indent}output[{index}] key={key} type={output.type} status={output.status} len={output.len}{desc}"
            f" data={_shown(output.data)}", file=file or sys.stdout)


def write_outputs(outputs, directory):
    """Writes each node's bytes to directory/KEY (nodes with the same key concatenated); keys that are
    not plain file names are refused (ValueError), as the harness refuses them."""
    files = {}
    for output in outputs:
        if not output.key or "/" in output.key or output.key.startswith(".") or "\0" in output.key:
            raise ValueError(f'refusing to write output key "{output.key}" as a file name')
        files.setdefault(output.key, []).append(bytes(output.data))
    for key, parts in files.items():
        with open(os.path.join(directory, key), "wb") as file:
            file.write(b"".join(parts))
