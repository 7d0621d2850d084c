/*
 * The CPython API as Swift sees it (module CPython).
 *
 * pyconfig.h defines feature macros (_GNU_SOURCE, _XOPEN_SOURCE, ...) before it includes libc
 * headers. If they took effect, libc types seen through this module (fd_set, ...) would differ from
 * the same types in Swift's Glibc module and the two modules would not load together. Processing
 * <features.h> first fixes libc's view to the default one Swift uses; Python.h's own redefinitions
 * then change nothing in libc. CPython's ABI does not depend on these macros.
 */
#include <features.h>

#define PY_SSIZE_T_CLEAN
#include <Python.h>
