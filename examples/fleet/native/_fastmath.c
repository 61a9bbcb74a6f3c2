/* A CPython extension module that links against libfastmath.so. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#include "fastmath.h"

static int to_doubles(PyObject *seq, double **out, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of numbers");
    if (fast == NULL) {
        return -1;
    }
    *n = PySequence_Fast_GET_SIZE(fast);
    *out = PyMem_Malloc(sizeof(double) * (size_t)(*n > 0 ? *n : 1));
    if (*out == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        (*out)[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (PyErr_Occurred()) {
            PyMem_Free(*out);
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

static PyObject *dot(PyObject *self, PyObject *args) {
    PyObject *a_obj, *b_obj;
    double *a, *b;
    Py_ssize_t na, nb;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &a_obj, &b_obj)) {
        return NULL;
    }
    if (to_doubles(a_obj, &a, &na) < 0) {
        return NULL;
    }
    if (to_doubles(b_obj, &b, &nb) < 0) {
        PyMem_Free(a);
        return NULL;
    }
    if (na != nb) {
        PyMem_Free(a);
        PyMem_Free(b);
        PyErr_SetString(PyExc_ValueError, "vectors differ in length");
        return NULL;
    }
    double result = fastmath_dot(a, b, (size_t)na);
    PyMem_Free(a);
    PyMem_Free(b);
    return PyFloat_FromDouble(result);
}

static PyObject *version(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return PyUnicode_FromString(fastmath_version());
}

static PyMethodDef methods[] = {
    {"dot", dot, METH_VARARGS, "Dot product of two vectors, computed by libfastmath."},
    {"version", version, METH_NOARGS, "Version of the linked libfastmath."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastmath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastmath(void) { return PyModule_Create(&module); }
