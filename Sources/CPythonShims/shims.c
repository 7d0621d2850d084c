#define _GNU_SOURCE
#include "CPythonShims.h"
#include <dlfcn.h>
#include <unistd.h>
#include <structmember.h>

PyObject *aiges_py_none(void) { return Py_None; }
PyObject *aiges_py_true(void) { return Py_True; }
PyObject *aiges_py_false(void) { return Py_False; }
Py_ssize_t aiges_py_refcnt(PyObject *o) { return Py_REFCNT(o); }

int aiges_py_is_long(PyObject *o) { return PyLong_Check(o); }
int aiges_py_is_unicode(PyObject *o) { return PyUnicode_Check(o); }
int aiges_py_is_tuple(PyObject *o) { return PyTuple_Check(o); }
int aiges_py_is_dict(PyObject *o) { return PyDict_Check(o); }
int aiges_py_is_list(PyObject *o) { return PyList_Check(o); }

Py_ssize_t aiges_py_fast_size(PyObject *fast) { return PySequence_Fast_GET_SIZE(fast); }
PyObject *aiges_py_fast_item(PyObject *fast, Py_ssize_t index) { return PySequence_Fast_GET_ITEM(fast, index); }

PyObject *aiges_py_vectorcall(PyObject *callable, PyObject *const *args, size_t nargs) {
    return PyObject_Vectorcall(callable, args, nargs, NULL);
}

PyObject *aiges_py_readonly_view(const void *data, Py_ssize_t len) {
    /* PyMemoryView_FromMemory takes char *, but PyBUF_READ never writes through it. */
    return PyMemoryView_FromMemory((char *)data, len, PyBUF_READ);
}

Py_ssize_t aiges_py_slot_offset(PyObject *descriptor) {
    if (descriptor == NULL || !Py_IS_TYPE(descriptor, &PyMemberDescr_Type)) return -1;
    PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
    return member->type == T_OBJECT_EX ? member->offset : -1;
}

PyObject *aiges_py_alloc(PyObject *type) {
    PyTypeObject *cls = (PyTypeObject *)type;
    return cls->tp_alloc(cls, 0);
}

void aiges_py_set_slot(PyObject *object, Py_ssize_t offset, PyObject *value) {
    PyObject **slot = (PyObject **)((char *)object + offset);
    PyObject *old = *slot;
    Py_XINCREF(value);
    *slot = value;
    Py_XDECREF(old);
}

Py_ssize_t aiges_py_view_sharers(PyObject *view) {
    if (!PyMemoryView_Check(view)) return 0;
    return ((PyMemoryViewObject *)view)->mbuf->exports;
}

PyObject *aiges_py_exc_type_error(void) { return PyExc_TypeError; }
PyObject *aiges_py_exc_attribute_error(void) { return PyExc_AttributeError; }

long aiges_thread_id(void) { return (long)gettid(); }

const char *aiges_shared_object_path(const void *address) {
    Dl_info info;
    return dladdr(address, &info) != 0 ? info.dli_fname : NULL;
}

/* A loan is a capsule whose pointer is the loader's bytes and whose context is their length.
   Revoking points it at `revoked`, a marker no loan can have. */
static const char loan_name[] = "aiges.loan";
static char revoked;

PyObject *aiges_py_loan_new(const void *data, Py_ssize_t len) {
    PyObject *loan = PyCapsule_New(data != NULL ? (void *)data : &revoked + 1, loan_name, NULL);
    if (loan != NULL && PyCapsule_SetContext(loan, (void *)(size_t)len) != 0) Py_CLEAR(loan);
    return loan;
}

PyObject *aiges_py_loan_copy(PyObject *loan) {
    void *data = PyCapsule_GetPointer(loan, loan_name);
    if (data == NULL) return NULL;
    if (data == &revoked) {
        PyErr_SetString(PyExc_ValueError, "the loader's request memory was released when its call returned");
        return NULL;
    }
    Py_ssize_t len = (Py_ssize_t)(size_t)PyCapsule_GetContext(loan);
    return PyBytes_FromStringAndSize(len > 0 ? (const char *)data : NULL, len);
}

void aiges_py_loan_revoke(PyObject *loan) {
    if (PyCapsule_IsValid(loan, loan_name)) PyCapsule_SetPointer(loan, &revoked);
}

int aiges_py_buffer_writable(const Py_buffer *view) { return view->readonly == 0; }

/* A read-only buffer over memory the plugin owns (a worker's shared-memory input), handed out as a
   memoryview: the memory stays valid while any view or buffer made from it lives; the exporter's
   dealloc calls release(context) (GIL held). */
typedef struct {
    PyObject_HEAD
    void *data;
    Py_ssize_t len;
    void (*release)(void *);
    void *context;
} SharedBytes;

static int shared_getbuffer(PyObject *self, Py_buffer *view, int flags) {
    SharedBytes *shared = (SharedBytes *)self;
    return PyBuffer_FillInfo(view, self, shared->data, shared->len, 1, flags);
}

static void shared_dealloc(PyObject *self) {
    SharedBytes *shared = (SharedBytes *)self;
    PyTypeObject *type = Py_TYPE(self);
    if (shared->release != NULL) shared->release(shared->context);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *shared_type;

PyObject *aiges_py_shared_view(void *data, Py_ssize_t len, void (*release)(void *), void *context) {
    if (shared_type == NULL) {
        static PyType_Slot slots[] = {
            {Py_bf_getbuffer, shared_getbuffer},
            {Py_tp_dealloc, shared_dealloc},
            {0, NULL},
        };
        static PyType_Spec spec = {"aiges_embed.SharedBytes", sizeof(SharedBytes), 0, Py_TPFLAGS_DEFAULT, slots};
        shared_type = PyType_FromSpec(&spec);
        if (shared_type == NULL) {
            release(context);
            return NULL;
        }
    }
    SharedBytes *shared = PyObject_New(SharedBytes, (PyTypeObject *)shared_type);
    if (shared == NULL) {
        release(context);
        return NULL;
    }
    Py_INCREF(shared_type); /* heap type instances own a reference to their type */
    shared->data = data != NULL ? data : (void *)&revoked;
    shared->len = len;
    shared->release = release;
    shared->context = context;
    PyObject *view = PyMemoryView_FromObject((PyObject *)shared);
    Py_DECREF(shared); /* the view holds it now (or it is freed, releasing) */
    return view;
}
