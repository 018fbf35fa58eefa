/* qcalc.core._minmax: each row's min and max of bfloat16 data, in one pass over its bits.
 *
 * The numpy reference is qcalc.core.stats.bf16_rows_minmax: bfloat16 bits become int16 keys
 * that order like the values (negative values get their magnitude bits flipped), the keys
 * are reduced, and the extreme keys turn back into values. Order: -NaN < -inf < ... < -0 <
 * +0 < ... < +inf < NaN, so a row holding both zeros has min -0.0 and max +0.0, and a row
 * holding a NaN has a key beyond an infinity at one end: both its min and max are NaN.
 *
 * Integer min / max only: the loop vectorises (pminsw / pmaxsw) and every result is exact.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define POS_INF_KEY 0x7F80
#define NEG_INF_KEY (-0x7F81)

static inline int16_t key_of(uint16_t bits)
{
    int16_t s = (int16_t)bits;
    return (int16_t)(s ^ ((s >> 15) & 0x7FFF));
}

static inline float value_of(int16_t key)
{
    uint16_t bits = (uint16_t)(key ^ ((key >> 15) & 0x7FFF));
    uint32_t wide = (uint32_t)bits << 16;
    float out;
    memcpy(&out, &wide, sizeof out);
    return out;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void reduce_rows(const uint16_t *bits, Py_ssize_t rows, Py_ssize_t cols,
                        float *out_min, float *out_max)
{
    for (Py_ssize_t r = 0; r < rows; r++) {
        const uint16_t *row = bits + r * cols;
        int16_t lo = INT16_MAX, hi = INT16_MIN;
        for (Py_ssize_t j = 0; j < cols; j++) {
            int16_t k = key_of(row[j]);
            lo = k < lo ? k : lo;
            hi = k > hi ? k : hi;
        }
        if (hi > POS_INF_KEY || lo < NEG_INF_KEY) {
            out_min[r] = out_max[r] = (float)NAN;
        } else {
            out_min[r] = value_of(lo);
            out_max[r] = value_of(hi);
        }
    }
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize,
                      const char *what)
{
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: items of %zd bytes expected, not %zd", what,
                     itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* bf16_rows(bits, cols, out_min, out_max): `bits` a C-contiguous buffer of uint16 (rows x
 * cols), out_min / out_max writable float32 buffers of `rows` items. */
static PyObject *bf16_rows(PyObject *self, PyObject *args)
{
    PyObject *bits_obj, *min_obj, *max_obj;
    Py_ssize_t cols;
    if (!PyArg_ParseTuple(args, "OnOO", &bits_obj, &cols, &min_obj, &max_obj))
        return NULL;
    Py_buffer bits, mins, maxs;
    if (get_buffer(bits_obj, &bits, 0, 2, "bits") < 0)
        return NULL;
    if (get_buffer(min_obj, &mins, 1, 4, "out_min") < 0) {
        PyBuffer_Release(&bits);
        return NULL;
    }
    if (get_buffer(max_obj, &maxs, 1, 4, "out_max") < 0) {
        PyBuffer_Release(&bits);
        PyBuffer_Release(&mins);
        return NULL;
    }
    Py_ssize_t items = bits.len / 2, rows = mins.len / 4;
    if (cols <= 0 || rows * cols != items || maxs.len != mins.len) {
        PyErr_SetString(PyExc_ValueError, "bits must hold rows x cols items, one min and "
                                          "one max per row");
    } else {
        Py_BEGIN_ALLOW_THREADS
        reduce_rows((const uint16_t *)bits.buf, rows, cols, (float *)mins.buf,
                    (float *)maxs.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&mins);
    PyBuffer_Release(&maxs);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"bf16_rows", bf16_rows, METH_VARARGS,
     "bf16_rows(bits, cols, out_min, out_max): each row's min and max of bfloat16 bits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_minmax", "Per-row min / max of bfloat16 data.", -1, methods,
};

PyMODINIT_FUNC PyInit__minmax(void) { return PyModule_Create(&module); }
