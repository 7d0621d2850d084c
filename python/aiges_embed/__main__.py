"""`python3 -m aiges_embed run wrapper.py ...`: runs a wrapper.py without the plugin and the loader.

Exit status: 0 ok, 1 a call failed (its code and text are printed), 2 bad command line.
"""
import argparse
import os
import re
import sys

from aiges_embed.runner import Node, PluginError, Runner, pattern, print_outputs, write_outputs

DESCRIPTION = """\
Runs a wrapper.py as libwrapper.so would, with no plugin and no loader: the author's inner loop.

  python3 -m aiges_embed run wrapper.py -p KEY=VALUE -i KEY[:TYPE]=VALUE [-d KEY.NAME=VALUE]
      [-c K=V] [-n N] [--session [--push] | --async | --batch] [-o OUTDIR]

It loads the file like the plugin (its folder on sys.path, class Wrapper or -c wrapper.class=NAME),
calls wrapperInit(config), then one-shot wrapperOnceExec (--async: wrapperOnceExecAsync and the result
it delivers with aiges_embed.callback; --batch: the -n requests as one wrapperOnceExecBatch call, as
the plugin gathers them with config batch.max_size) or a session (--session: wrapperCreate, one wrapperWrite per -i
chunk with statuses DataBegin, DataContinue..., DataEnd, then wrapperRead, or with --push callbacks
only, until a DataEnd result, wrapperDestroy), then wrapperFini; and prints each output node as
aiges-harness does. Every method gets its arguments by parameter name, and every result goes through
the plugin's checks with its error codes: wrong return type 22005, empty list 22007, bad output key,
data or len 22008, missing method 22006, an exception 22004 (its traceback on stderr).
The harness (dist/aiges-harness) stays the check of the built plugin.
"""

EPILOG = """\
VALUE is @FILE (its bytes), gen:SIZE (SIZE pattern bytes, as aiges-harness makes them; SIZE may end
in K or M) or literal text. TYPE is text, audio, image, video, per or a number.
exit status: 0 ok, 1 a call failed (its code and text are printed), 2 bad command line
"""

TYPES = {"text": 0, "audio": 1, "image": 2, "video": 3, "per": 4}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m aiges_embed", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run", help="run a wrapper.py without the plugin", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("wrapper", help="the wrapper.py to run")
    run.add_argument("-c", "--config", action="append", default=[], metavar="K=V",
                     help="config entry for wrapperInit (wrapper.class, python.path, python.venv, your own)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="K=V",
                     help="request param (sid defaults to run-N, sessions sid-N)")
    run.add_argument("-i", "--input", action="append", default=[], metavar="KEY[:TYPE]=VALUE",
                     help="request node; with --session, one chunk per -i")
    run.add_argument("-d", "--desc", action="append", default=[], metavar="KEY.NAME=VALUE",
                     help="desc entry NAME=VALUE on the (first) input node KEY")
    run.add_argument("--pers", type=_natural, default=0, metavar="ID", help="the persId to pass (default 0)")
    run.add_argument("-n", "--repeat", type=_positive, default=1, metavar="N", help="requests or sessions (default 1)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--session", action="store_true", help="run a session instead of a one-shot request")
    mode.add_argument("--async", dest="asynchronous", action="store_true",
                      help="one-shot through wrapperOnceExecAsync and its callback")
    mode.add_argument("--batch", action="store_true",
                      help="the -n one-shot requests as one wrapperOnceExecBatch(requests) call")
    run.add_argument("--push", action="store_true",
                     help="--session: results by aiges_embed.callback only (the loader's asyncMode), no wrapperRead")
    run.add_argument("--wait-ms", type=_positive, default=10000, metavar="MS",
                     help="how long to wait for async or session results (default 10000)")
    run.add_argument("-o", "--out-dir", metavar="DIR",
                     help="write each output node's data to DIR/KEY (the last request; a session's nodes "
                          "with the same key concatenated)")
    arguments = parser.parse_args(argv)
    if arguments.command != "run":
        parser.print_help(sys.stderr)
        return 2
    if arguments.push and not arguments.session:
        run.error("--push needs --session")
    try:
        config = dict(_pair(entry, "config") for entry in arguments.config)
        params = dict(_pair(entry, "param") for entry in arguments.param)
        inputs = [_input(entry) for entry in arguments.input]
        for entry in arguments.desc:
            _add_desc(inputs, entry)
    except ValueError as error:
        run.error(str(error))
    config["wrapper.file"] = arguments.wrapper
    return _run(arguments, Runner(arguments.wrapper, config), params, inputs)


def _run(arguments, runner, params, inputs):
    """Init, the requests or sessions, fini; prints as the harness does. Returns the exit status."""
    try:
        runner.init()
    except PluginError as error:
        print(f"wrapperInit: error {error.code}: {runner.describe(error)}")
        return 1
    mode = "session" if arguments.session else "async" if arguments.asynchronous else "exec"
    failures = 0
    if arguments.batch:
        mode = "batch"
        failures = _run_batch(arguments, runner, params, inputs)
    for call in range(0 if arguments.batch else arguments.repeat):
        show = call == 0 or arguments.repeat <= 8
        label = f"{'session' if arguments.session else 'request'} {call}"
        try:
            if arguments.session:
                outcome = runner.session(
                    params, inputs, usr_tag=f"session-{call}", push=arguments.push, wait_ms=arguments.wait_ms,
                    sid=f"sid-{call}", pers_id=arguments.pers)
                outputs = outcome.outputs
                if show:
                    print(f"{label}: {len(outcome.results)} results, {len(outputs)} nodes, "
                          f"final {'yes' if outcome.finished else 'no'}")
                    print_outputs(outputs)
                    if outcome.debug is not None:
                        print(f"  debug: {outcome.debug}")
                if not outcome.finished:
                    print(f"{label}: no final result within {arguments.wait_ms} ms")
                    failures += 1
            else:
                request = dict(params)
                request.setdefault("sid", f"run-{call}")
                if arguments.asynchronous:
                    outputs = runner.exec_async(
                        request, inputs, usr_tag=f"async-{call}", pers_id=arguments.pers, wait_ms=arguments.wait_ms)
                else:
                    outputs = runner.exec(request, inputs, usr_tag=f"tag-{call}", pers_id=arguments.pers)
                if show:
                    print(f"{label}: ok")
                    print_outputs(outputs)
        except PluginError as error:
            print(f"{label}: error {error.code}: {runner.describe(error)}")
            failures += 1
            continue
        if arguments.out_dir and call == arguments.repeat - 1:
            try:
                os.makedirs(arguments.out_dir, exist_ok=True)
                write_outputs(outputs, arguments.out_dir)
            except (OSError, ValueError) as error:
                print(f"{label}: cannot write outputs: {error}")
                failures += 1
    try:
        runner.fini()
    except PluginError as error:
        print(f"wrapperFini: error {error.code}: {runner.describe(error)}")
        failures += 1
    noun = "sessions" if arguments.session else "requests"
    print(f"{mode}: {arguments.repeat} {noun}, {failures} failed")
    return 0 if failures == 0 else 1


def _run_batch(arguments, runner, params, inputs):
    """The -n requests (sids run-0, run-1, …, usrTags tag-N) as one wrapperOnceExecBatch call; prints
    each request's outcome as exec does. Returns how many failed."""
    requests = []
    for call in range(arguments.repeat):
        request = dict(params)
        request.setdefault("sid", f"run-{call}")
        requests.append((request, inputs, f"tag-{call}", arguments.pers))
    try:
        outcomes = runner.exec_batch(requests)
    except PluginError as error:
        print(f"batch of {len(requests)}: error {error.code}: {runner.describe(error)}")
        return len(requests)
    failures = 0
    for call, outcome in enumerate(outcomes):
        label = f"request {call}"
        if isinstance(outcome, PluginError):
            print(f"{label}: error {outcome.code}: {runner.describe(outcome)}")
            failures += 1
            continue
        if call == 0 or arguments.repeat <= 8:
            print(f"{label}: ok")
            print_outputs(outcome)
        if arguments.out_dir and call == arguments.repeat - 1:
            try:
                os.makedirs(arguments.out_dir, exist_ok=True)
                write_outputs(outcome, arguments.out_dir)
            except (OSError, ValueError) as error:
                print(f"{label}: cannot write outputs: {error}")
                failures += 1
    return failures


def _positive(text):
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def _natural(text):
    if not re.fullmatch(r"[0-9]+", text) or int(text) > 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"not a number from 0 to 4294967295: {text!r}")
    return int(text)


def _pair(text, what):
    key, equals, value = text.partition("=")
    if not key or not equals:
        raise ValueError(f'bad {what} "{text}" (expected K=V)')
    return key, value


def _input(text):
    """-i KEY[:TYPE]=VALUE as a Node (status DataOnce; sessions set their own)."""
    key, value = _pair(text, "input")
    key, colon, type_name = key.partition(":")
    node_type = TYPES.get(type_name, None) if colon else 0
    if node_type is None:
        if not re.fullmatch(r"[0-9]+", type_name) or int(type_name) > 0x7FFFFFFF:
            raise ValueError(f'bad input "{text}" (TYPE is text, audio, image, video, per or a number)')
        node_type = int(type_name)
    if not key:
        raise ValueError(f'bad input "{text}" (expected KEY[:TYPE]=VALUE)')
    return Node(key, _value(value, text), node_type)


def _value(value, text):
    """VALUE: @FILE, gen:SIZE or literal text (the command line's own bytes)."""
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as file:
                return file.read()
        except OSError as error:
            raise ValueError(f"cannot read {value[1:]}: {error.strerror}") from None
    if value.startswith("gen:"):
        match = re.fullmatch(r"([0-9]+)([KkMm]?)", value[4:])
        size = int(match.group(1)) << {"": 0, "k": 10, "m": 20}[match.group(2).lower()] if match else -1
        if not 0 <= size <= 0xFFFFFFFF:
            raise ValueError(f'bad input "{text}" (gen:SIZE: a number of bytes, may end in K or M)')
        return pattern(size)
    return os.fsencode(value)


def _add_desc(inputs, text):
    """-d KEY.NAME=VALUE: desc NAME=VALUE on the first input node named KEY."""
    key, value = _pair(text, "desc")
    key, dot, name = key.partition(".")
    if not dot or not name:
        raise ValueError(f'bad desc "{text}" (expected KEY.NAME=VALUE)')
    node = next((node for node in inputs if node.key == key), None)
    if node is None:
        raise ValueError(f'desc "{text}" names no input "{key}"')
    node.desc[name] = value


if __name__ == "__main__":
    sys.exit(main())
