// aiges-worker: one worker process of libwrapper.so (config `workers = N`). The plugin starts it
// with posix_spawn, its end of the control socket as fd 3; it runs wrapper.py in its own
// interpreter until the plugin closes the socket or dies. Not meant to be started by hand.

import AigesBridge
import Glibc

exit(WorkerServer.run(arguments: CommandLine.arguments))
