/*
 * Who holds the GIL right now, read from CPython's own state (for the entry gate, gate.c): whether
 * the gate's owner, in a call that has not completed for a while, holds the GIL (it computes, or its
 * thread waits for a CPU: other callers can do nothing meanwhile) or let go of it (inference, I/O:
 * they can run). CPython has no public API for this; 3.11 keeps it in `_PyRuntime.ceval.gil`, which
 * its internal headers describe. Built against another version, the probe answers "unknown".
 */
#define Py_BUILD_CORE 1
#include <Python.h>

#include "CPythonShims.h"

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#include "internal/pycore_runtime.h"

int aiges_py_gil_held_by(const void *thread_state) {
    if (!_Py_atomic_load_relaxed(&_PyRuntime.ceval.gil.locked)) return 0;
    return (const void *)_Py_atomic_load_relaxed(&_PyRuntime.ceval.gil.last_holder) == thread_state;
}
#else
int aiges_py_gil_held_by(const void *thread_state) {
    (void)thread_state;
    return -1;
}
#endif

const void *aiges_py_own_thread_state(void) { return PyGILState_GetThisThreadState(); }
