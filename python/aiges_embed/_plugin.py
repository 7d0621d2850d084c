"""Private helpers of libwrapper.so (loading wrapper.py, introspection, tracebacks, logging). Not an API.

The plugin runs this file as `aiges_embed._plugin` with its natives (`_native_log`) already in the
namespace; the local runner (`python3 -m aiges_embed run`) imports it like any module.
"""
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

try:
    _native_log
except NameError:  # imported outside the plugin: "the plugin's log" is stderr

    def _native_log(level, message):
        print(message, file=sys.__stderr__)


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


def configure(venv, paths, executable, capture_output, log_level=None):
    """Applies python.venv, python.path, python.executable, output capture and, with `log_level` (a
    logging level number from log.level), the root logger's level, so that wrapper.py's info and debug
    records reach the plugin's log when log.level lets them through (before wrapper.py loads)."""
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
        root = logging.getLogger()
        if not root.handlers:
            # A root handler of the plugin's own: without one, a module-level logging.info() would run
            # logging.basicConfig(), whose stderr handler turns every record into a WARNING line.
            default = PluginLogHandler()
            default.aiges_default = True
            default.setFormatter(NamedFormatter())
            root.addHandler(default)
    if log_level is not None:
        logging.getLogger().setLevel(log_level)


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


class NamedFormatter(logging.Formatter):
    """The message, after its logger's name unless that is the root logger."""

    def format(self, record):
        message = super().format(record)
        return message if record.name == "root" else f"{record.name}: {message}"


def adopt_log_handlers():
    """Root StreamHandlers writing to the captured stdout/stderr (the SDK adds one, logging.basicConfig
    makes one) log through the plugin instead, keeping their level and format less its timestamp: the
    plugin's line has one already."""
    root = logging.getLogger()
    for index, handler in enumerate(list(root.handlers)):
        if type(handler) is logging.StreamHandler and isinstance(handler.stream, LineWriter):
            replacement = PluginLogHandler(handler.level)
            replacement.setFormatter(without_time(handler.formatter))
            root.handlers[index] = replacement
    # Handlers of wrapper.py's or the SDK's own take over from the plugin's default one.
    own = [handler for handler in root.handlers if not getattr(handler, "aiges_default", False)]
    if own and len(own) < len(root.handlers):
        root.handlers[:] = own


def without_time(formatter):
    """A copy of a %-style logging.Formatter without %(asctime)s and %(msecs)d (and the separators
    after them); other formatters are kept as they are."""
    import re

    fmt = getattr(formatter, "_fmt", None)
    if formatter is None or not isinstance(fmt, str) or not isinstance(formatter._style, logging.PercentStyle):
        return formatter
    stripped = re.sub(r"\[?%\(asctime\)s(?:[,.]%\(msecs\)0?\d*d)?\]?[\s|:,\-]*", "", fmt)
    stripped = re.sub(r"%\(msecs\)0?\d*d[\s|:,\-]*", "", stripped)
    return formatter if stripped == fmt else logging.Formatter(stripped or "%(message)s")


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
