/* Batched multipart receives and sends on pyzmq's sockets, in C.
 *
 * A hub spends much of its time per message in Python-level calls into pyzmq, one per frame
 * (plus the objects each call makes).  These two functions move a whole batch of messages, or one
 * whole message, per Python call.  They call the libzmq that pyzmq itself loaded (``bind`` takes
 * its path and looks the functions up), on the socket's address (``Socket.underlying``), so they
 * work with any pyzmq build that links libzmq as a shared library.
 *
 *   bind(path)                    look up libzmq's functions in the loaded library at ``path``
 *   recv(address, max)            -> (messages, errno): up to ``max`` complete multipart messages
 *                                    waiting on the socket, each a list of bytes; errno is 0 when
 *                                    the socket had no more (or ``max`` was reached), else the
 *                                    error that stopped the batch
 *   send(address, frames)         -> errno: one multipart message (a list of bytes-like frames,
 *                                    copied); 0 when it was queued
 *
 * Errors come back as errno values for the caller to raise as zmq.ZMQError, as pyzmq would.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>

typedef struct {
    unsigned char opaque[64]; /* zmq_msg_t: 64 bytes, aligned, in every libzmq 4.x */
} __attribute__((aligned(8))) zmsg;

#define DONTWAIT 1
#define SNDMORE 2

static int (*msg_init)(zmsg *);
static int (*msg_recv)(zmsg *, void *, int);
static int (*msg_close)(zmsg *);
static void *(*msg_data)(zmsg *);
static size_t (*msg_size)(const zmsg *);
static int (*msg_more)(const zmsg *);
static int (*zsend)(void *, const void *, size_t, int);
static int (*zerrno)(void);
static int bound = 0;

static int lookup(void *lib, const char *name, void **slot) {
    *slot = dlsym(lib, name);
    if (*slot == NULL) {
        PyErr_Format(PyExc_OSError, "libzmq has no %s", name);
        return -1;
    }
    return 0;
}

static PyObject *bind(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD); /* the copy pyzmq loaded, not a second one */
    if (lib == NULL) {
        PyErr_Format(PyExc_OSError, "libzmq is not loaded from %s", path);
        return NULL;
    }
    if (lookup(lib, "zmq_msg_init", (void **)&msg_init) || lookup(lib, "zmq_msg_recv", (void **)&msg_recv)
        || lookup(lib, "zmq_msg_close", (void **)&msg_close) || lookup(lib, "zmq_msg_data", (void **)&msg_data)
        || lookup(lib, "zmq_msg_size", (void **)&msg_size) || lookup(lib, "zmq_msg_more", (void **)&msg_more)
        || lookup(lib, "zmq_send", (void **)&zsend) || lookup(lib, "zmq_errno", (void **)&zerrno))
        return NULL;
    bound = 1;
    Py_RETURN_NONE;
}

static int not_bound(void) {
    if (bound)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "bind() was not called");
    return 1;
}

/* One multipart message into a new list; NULL with *err set (EAGAIN: nothing waiting), or
 * NULL with a Python exception (*err 0). */
static PyObject *recv_one(void *sock, int *err) {
    PyObject *frames = NULL;
    zmsg m;
    int flags = DONTWAIT; /* only the first frame may be missing: the rest arrive with it */
    for (;;) {
        msg_init(&m);
        if (msg_recv(&m, sock, flags) < 0) {
            *err = zerrno();
            msg_close(&m);
            if (*err == EINTR && frames != NULL) { /* mid-message: the rest is there */
                if (PyErr_CheckSignals() < 0) {
                    *err = 0;
                    Py_DECREF(frames);
                    return NULL;
                }
                continue;
            }
            Py_XDECREF(frames);
            return NULL;
        }
        flags = 0;
        PyObject *frame = PyBytes_FromStringAndSize(msg_data(&m), (Py_ssize_t)msg_size(&m));
        int more = msg_more(&m);
        msg_close(&m);
        if (frame == NULL || (frames == NULL && (frames = PyList_New(0)) == NULL)) {
            Py_XDECREF(frame);
            *err = 0;
            return NULL;
        }
        int rc = PyList_Append(frames, frame);
        Py_DECREF(frame);
        if (rc < 0) {
            Py_DECREF(frames);
            *err = 0;
            return NULL;
        }
        if (!more)
            return frames;
    }
}

static PyObject *recv(PyObject *self, PyObject *args) {
    unsigned long long address;
    int max;
    if (!PyArg_ParseTuple(args, "Ki", &address, &max) || not_bound())
        return NULL;
    PyObject *messages = PyList_New(0);
    if (messages == NULL)
        return NULL;
    int err = 0;
    for (int i = 0; i < max; i++) {
        PyObject *frames = recv_one((void *)(uintptr_t)address, &err);
        if (frames == NULL) {
            if (err == 0) { /* a Python exception */
                Py_DECREF(messages);
                return NULL;
            }
            if (err == EAGAIN)
                err = 0;
            break;
        }
        int rc = PyList_Append(messages, frames);
        Py_DECREF(frames);
        if (rc < 0) {
            Py_DECREF(messages);
            return NULL;
        }
    }
    return Py_BuildValue("(Ni)", messages, err);
}

static PyObject *send(PyObject *self, PyObject *args) {
    unsigned long long address;
    PyObject *frames;
    if (!PyArg_ParseTuple(args, "KO!", &address, &PyList_Type, &frames) || not_bound())
        return NULL;
    void *sock = (void *)(uintptr_t)address;
    Py_ssize_t n = PyList_GET_SIZE(frames);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "a message has at least one frame");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PyList_GET_ITEM(frames, i), &view, PyBUF_SIMPLE) < 0)
            return NULL;
        int flags = i < n - 1 ? SNDMORE : 0;
        int rc, err = 0;
        for (;;) {
            Py_BEGIN_ALLOW_THREADS /* a send can block (a full queue on a ROUTER_MANDATORY socket) */
            rc = zsend(sock, view.buf, (size_t)view.len, flags);
            if (rc < 0)
                err = zerrno();
            Py_END_ALLOW_THREADS
            if (rc >= 0 || err != EINTR)
                break;
            if (PyErr_CheckSignals() < 0) {
                PyBuffer_Release(&view);
                return NULL;
            }
        }
        PyBuffer_Release(&view);
        if (rc < 0)
            return PyLong_FromLong(err);
    }
    return PyLong_FromLong(0);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, "bind(path): use the libzmq loaded from path."},
    {"recv", recv, METH_VARARGS, "recv(address, max) -> (messages, errno)"},
    {"send", send, METH_VARARGS, "send(address, frames) -> errno"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_zmqbatch", "Batched multipart receives and sends on pyzmq sockets.", -1, methods,
};

PyMODINIT_FUNC PyInit__zmqbatch(void) {
    return PyModule_Create(&module);
}
