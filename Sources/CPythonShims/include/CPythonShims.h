/*
 * Tiny C wrappers for CPython macros and inline functions that Swift cannot
 * import (or imports awkwardly). Every symbol is prefixed aiges_py_.
 */
#ifndef AIGES_CPYTHON_SHIMS_H
#define AIGES_CPYTHON_SHIMS_H

#include "../../CPython/CPython.h"

/** Borrowed references to None, True and False. */
PyObject *aiges_py_none(void);
PyObject *aiges_py_true(void);
PyObject *aiges_py_false(void);
/** Current reference count of o. */
Py_ssize_t aiges_py_refcnt(PyObject *o);

int aiges_py_is_long(PyObject *o);
int aiges_py_is_unicode(PyObject *o);
int aiges_py_is_tuple(PyObject *o);
int aiges_py_is_dict(PyObject *o);
int aiges_py_is_list(PyObject *o);

/** PySequence_Fast_GET_SIZE / PySequence_Fast_GET_ITEM (borrowed) on a PySequence_Fast result. */
Py_ssize_t aiges_py_fast_size(PyObject *fast);
PyObject *aiges_py_fast_item(PyObject *fast, Py_ssize_t index);

/** Fast call: callable(*args[0..<nargs]). New reference or NULL with an exception set. */
PyObject *aiges_py_vectorcall(PyObject *callable, PyObject *const *args, size_t nargs);

/** A read-only memoryview over memory Python does not own (borrowed until released). */
PyObject *aiges_py_readonly_view(const void *data, Py_ssize_t len);

/** Offset of the __slots__ member `descriptor` (a member_descriptor) in its instances, or -1. */
Py_ssize_t aiges_py_slot_offset(PyObject *descriptor);
/** A new, empty instance of `type` (all slots NULL) without running __init__. */
PyObject *aiges_py_alloc(PyObject *type);
/** Stores a new reference to `value` in the slot at `offset` of `object` (releasing the old one). */
void aiges_py_set_slot(PyObject *object, Py_ssize_t offset, PyObject *value);

/** How many memoryviews (the view itself while unreleased, its slices and copies) share `view`'s
    managed buffer; 0 if `view` is not a memoryview. */
Py_ssize_t aiges_py_view_sharers(PyObject *view);

/** Exception types Swift 6 cannot read as globals (they are mutable C variables). */
PyObject *aiges_py_exc_type_error(void);
PyObject *aiges_py_exc_attribute_error(void);

/** A capsule lending `len` bytes at `data` (loader memory) to Python for one call. Python code
    reads it only through aiges_py_loan_copy; aiges_py_loan_revoke ends it. NULL on failure. */
PyObject *aiges_py_loan_new(const void *data, Py_ssize_t len);
/** A new bytes object with the loaned bytes, or NULL with ValueError once the loan is revoked. */
PyObject *aiges_py_loan_copy(PyObject *loan);
/** Ends the loan: later copies raise ValueError. Does nothing for other objects. */
void aiges_py_loan_revoke(PyObject *loan);

/** A read-only memoryview over `len` bytes at `data` that the caller owns until release(context),
    which the exporter calls when the last view or buffer made from it is gone (GIL held; also on
    failure, which returns NULL). */
PyObject *aiges_py_shared_view(void *data, Py_ssize_t len, void (*release)(void *), void *context);

/** Whether the object exporting `view` (a Py_buffer) lets it be written to. */
int aiges_py_buffer_writable(const Py_buffer *view);

/* ---- threads and clocks (not CPython; here because they need _GNU_SOURCE) ---- */

/** CLOCK_MONOTONIC in nanoseconds. */
long long aiges_monotonic_ns(void);

/** Count calls into wrapper.py in progress, in the process and on the calling thread. */
void aiges_calls_enter(void);
void aiges_calls_leave(void);
/** Calls into wrapper.py in progress on other threads than the calling one. */
long aiges_calls_elsewhere(void);
/** Relaxed atomic add and load on a plain counter (metrics). */
void aiges_counter_add(long *counter, long value);
long aiges_counter_load(const long *counter);
/** Starts a detached thread running body(context); returns 0 on success. */
int aiges_thread_start(void (*body)(void *), void *context);

/** The calling thread's kernel thread id (gettid). */
long aiges_thread_id(void);

/** The path of the shared object containing address (dladdr), or NULL. */
const char *aiges_shared_object_path(const void *address);

/* ---- the entry gate (gate.c; see GIL.swift) ---- */

/** Sets how long an owner keeps the gate while others wait (`stint_ns`) and how long a parked gate
    is kept for its owner against a newcomer (`grace_ns`). */
void aiges_gate_configure(long long stint_ns, long long grace_ns);
/** Takes the gate: at once if it is free or parked by this thread (or parked, not taken back within
    the grace, and nobody waits); else waits in order to be handed it — until the owner's call has run
    `wait_ns` without holding the GIL, when every waiter goes for the GIL directly. Returns 1 if the
    calling thread owns the gate (and is inside a call), 0 if not (the gate is off, or go directly). */
int aiges_gate_enter(long long wait_ns);
/** The end of the owner's call: keeps the gate parked for its next call, or hands it to the first
    waiter (its stint is over, or it was slow to come back). Does nothing if the thread is not inside. */
void aiges_gate_leave(void);
/** Hands the gate to the first waiter, or frees it, now (before calling into the loader). */
void aiges_gate_release(void);
/** Whether the calling thread owns the gate and is inside a call. */
int aiges_gate_held(void);
/** 1 if `thread_state` holds the GIL now, 0 if it does not, -1 if this Python's state cannot be read
    (gil_probe.c). */
int aiges_py_gil_held_by(const void *thread_state);
/** The calling thread's Python thread state (PyGILState_GetThisThreadState), or NULL; no GIL needed. */
const void *aiges_py_own_thread_state(void);
/** Since the process started: stints handed from one thread to another, and times waiters went for the
    GIL directly because the owner was in a long call. */
long aiges_gate_handovers(void);
long aiges_gate_directs(void);

/* ---- worker processes (process.c) ---- */

/** sendmsg of `len` bytes with `fd` attached (SCM_RIGHTS) unless it is -1; never raises SIGPIPE.
    Returns the bytes sent or -1 (errno). */
long aiges_send_with_fd(int sock, const void *data, size_t len, int fd);
/** recvmsg into `data`; descriptors that arrive (close-on-exec) go to fds (up to capacity, the rest
    closed), their number to *count. Returns the bytes read, 0 at end of stream, -1 (errno). */
long aiges_recv_with_fds(int sock, void *data, size_t len, int *fds, int capacity, int *count);
/** A connected AF_UNIX stream socket pair, both ends close-on-exec. */
int aiges_socket_pair(int fds[2]);
/** posix_spawn of `program` with `child_fd` as the child's fd 3, default signal dispositions and an
    empty signal mask, and this process's environment. Returns 0 (the pid in *pid) or -1 (errno). */
int aiges_spawn(const char *program, char *const argv[], int child_fd, int *pid);
/** waitpid(pid): 1 when reaped (*exit_code or *signal_number set; -1/0 otherwise), 0 if still
    running (block == 0), -1 if it cannot be waited for. */
int aiges_wait_child(int pid, int block, int *exit_code, int *signal_number);
/** Whether child `pid` has exited (not reaped: a later aiges_wait_child reaps it). */
int aiges_child_exited(int pid);
/** Busy-polls fd for input for up to spin_ns (poll with no timeout, repeated): 1 once readable, else 0.
    A reply that comes within the spin then costs no sleep and wake-up. */
int aiges_readable_within(int fd, long long spin_ns);
/** A non-blocking close-on-exec eventfd, or -1. */
int aiges_event_new(void);
/** Makes eventfd `fd` readable. */
void aiges_event_signal(int fd);
/** poll() for input on two descriptors (`second` an eventfd, drained when readable). Returns bit 0
    if `first` is readable (or hung up), bit 1 if `second` was; 0 on timeout or error. */
int aiges_wait_readable(int first, int second, int timeout_ms);
/** Sets FD_CLOEXEC on fd. */
int aiges_close_on_exec(int fd);
/** In a worker: SIGKILL when the parent dies; -1 if the parent is not `expected_parent` any more. */
int aiges_die_with_parent(int expected_parent);
/** A close-on-exec memfd of `size` bytes, sealed against shrinking and growing, or -1 (errno). */
int aiges_memfd(const char *name, size_t size);
/** The size of memfd `fd` if it is sealed against shrinking, else -1. */
long long aiges_memfd_sealed_size(int fd);
/** A shared read-write mapping of fd, or NULL (errno). */
void *aiges_map_shared(int fd, size_t size);

/* ---- embedded Python sources (sources.c: python/aiges_embed/ built into the library) ---- */

/** The source of the module `aiges_embed` (python/aiges_embed/__init__.py), NUL-terminated, static. */
const char *aiges_source_embed(void);
/** The source of the plugin's private helpers `aiges_embed._plugin` (python/aiges_embed/_plugin.py). */
const char *aiges_source_plugin(void);

#endif
