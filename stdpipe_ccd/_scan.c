/*
 * One pass over a float image that flags NaN/inf pixels and pixels at or
 * above the saturation level: the no-cosmic-ray path of make_mask, which
 * numpy can only do in two passes (a test and a search for the failures).
 *
 * flag_nonfinite_saturated(data, level, flags, mask, nonfinite, saturated)
 *     data: C-contiguous float32 or float64; flags: uint16 and mask: bool
 *     of the same size, both updated in place (|= bit, = True); level is
 *     inf and saturated 0 where there is no saturation level.
 *     Returns (pixels not finite, pixels >= level, pixels newly masked).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Pixels tested together by a branch-free loop of fixed length, which the
 * compiler vectorises (at -O3); only the rare blocks with a failing pixel
 * are then looked at pixel by pixel. */
#define BLOCK 64

typedef struct {
    Py_ssize_t nonfinite, saturated, masked;
} Counts;

/* NAME_classify flags the failing pixels of data[start:stop]; NAME tests
 * every block and classifies those that fail. */
#define DEFINE_SCAN(NAME, TYPE, ABS)                                           \
    static void NAME##_classify(const TYPE *data, Py_ssize_t start,            \
                                Py_ssize_t stop, TYPE level, uint16_t *flags,  \
                                uint8_t *mask, uint16_t nonfinite_bit,         \
                                uint16_t saturated_bit, Counts *counts)        \
    {                                                                          \
        for (Py_ssize_t i = start; i < stop; i++) {                            \
            const int nonfinite = !isfinite(data[i]);                          \
            /* +inf is both; without a level (bit 0) nothing saturates */      \
            const int saturated = saturated_bit && data[i] >= level;           \
            if (!(nonfinite || saturated)) {                                   \
                continue; /* very negative: no flag */                         \
            }                                                                  \
            counts->nonfinite += nonfinite;                                    \
            counts->saturated += saturated;                                    \
            counts->masked += !mask[i];                                        \
            flags[i] |= (nonfinite ? nonfinite_bit : 0) |                      \
                        (saturated ? saturated_bit : 0);                       \
            mask[i] = 1;                                                       \
        }                                                                      \
    }                                                                          \
                                                                               \
    static void NAME(const TYPE *data, Py_ssize_t size, double top,            \
                     uint16_t *flags, uint8_t *mask, uint16_t nonfinite_bit,   \
                     uint16_t saturated_bit, Counts *counts)                   \
    {                                                                          \
        const TYPE level = (TYPE)top;                                          \
        Py_ssize_t start = 0;                                                  \
        for (; start + BLOCK <= size; start += BLOCK) {                        \
            /* |x| < level is false for NaN too: one test finds NaN, inf and   \
             * saturation; a TYPE-wide flag keeps the loop vectorisable */     \
            TYPE passing = 1;                                                  \
            for (Py_ssize_t i = 0; i < BLOCK; i++) {                           \
                passing = ABS(data[start + i]) < level ? passing : 0;          \
            }                                                                  \
            if (!passing) {                                                    \
                NAME##_classify(data, start, start + BLOCK, level, flags,      \
                                mask, nonfinite_bit, saturated_bit, counts);   \
            }                                                                  \
        }                                                                      \
        NAME##_classify(data, start, size, level, flags, mask, nonfinite_bit,  \
                        saturated_bit, counts);                                \
    }

DEFINE_SCAN(scan_float, float, fabsf)
DEFINE_SCAN(scan_double, double, fabs)

/* Get a C-contiguous buffer of ``obj`` whose items have ``format``. */
static int
get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *formats,
           const char *name)
{
    int how = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, how) < 0) {
        return -1;
    }
    const uint16_t one = 1;
    const char native = *(const char *)&one ? '<' : '>';
    const char *format = view->format;
    if (format[0] == '@' || format[0] == '=' || format[0] == native) {
        format++; /* the caller passes native byte order only */
    }
    if (strlen(format) != 1 || !strchr(formats, format[0])) {
        PyErr_Format(PyExc_TypeError, "%s has item format '%s', not one of '%s'",
                     name, view->format, formats);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
flag_nonfinite_saturated(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *data_obj, *flags_obj, *mask_obj;
    double top;
    unsigned short nonfinite_bit, saturated_bit;
    if (!PyArg_ParseTuple(args, "OdOOHH", &data_obj, &top, &flags_obj, &mask_obj,
                          &nonfinite_bit, &saturated_bit)) {
        return NULL;
    }
    Py_buffer data, flags, mask;
    if (get_buffer(data_obj, &data, 0, "fd", "data") < 0) {
        return NULL;
    }
    if (get_buffer(flags_obj, &flags, 1, "H", "flags") < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (get_buffer(mask_obj, &mask, 1, "?", "mask") < 0) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&flags);
        return NULL;
    }
    const Py_ssize_t size = mask.len;
    Counts counts = {0, 0, 0};
    if (data.len != size * data.itemsize || flags.len != size * flags.itemsize) {
        PyErr_SetString(PyExc_ValueError,
                        "data, flags and mask must have the same number of pixels");
    }
    else {
        const int is_float = data.format[strlen(data.format) - 1] == 'f';
        Py_BEGIN_ALLOW_THREADS
        if (is_float) {
            scan_float(data.buf, size, top, flags.buf, mask.buf, nonfinite_bit,
                       saturated_bit, &counts);
        }
        else {
            scan_double(data.buf, size, top, flags.buf, mask.buf, nonfinite_bit,
                        saturated_bit, &counts);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&flags);
    PyBuffer_Release(&mask);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return Py_BuildValue("nnn", counts.nonfinite, counts.saturated, counts.masked);
}

static PyMethodDef scan_methods[] = {
    {"flag_nonfinite_saturated", flag_nonfinite_saturated, METH_VARARGS,
     "flag_nonfinite_saturated(data, level, flags, mask, nonfinite_bit, saturated_bit)\n"
     "--\n\n"
     "Flag NaN/inf pixels and pixels >= level in one pass; return the counts\n"
     "(not finite, saturated, newly masked)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_scan",
    .m_doc = "Compiled pixel scans for stdpipe_ccd.masking.",
    .m_size = -1,
    .m_methods = scan_methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&scan_module);
}
