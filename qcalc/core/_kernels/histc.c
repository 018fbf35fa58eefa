/* qcalc.core._histc: qcalc.core.histogram.count in C, bit for bit.

   count(x, kind, m, lo, hi, below, above, out, bins, row0, row1, col0, col1)

   x      (cells, m) C-contiguous values: kind 0 float32, 1 float16 and 2 bfloat16 (both
          as uint16 bits); converted exactly to float32, as count() does.
   lo, hi, below, above   (cells,) float32: the Binning.
   out    (cells, bins + 2) C-contiguous int64 accumulator: for rows [row0, row1) and the
          elements [col0, col1) of each row, adds torch.histc's counts over [lo, hi] to
          columns [0, bins), the count of x < below to column bins and of x > above to
          column bins + 1.

   Every element is counted in float32 arithmetic in numpy's order (no FMA: the build uses
   -ffp-contract=off):  t = float32(float32(x - lo) * bins) / float32(hi - lo), counted iff
   lo <= x <= hi. The bin is int64(t) clipped to [0, bins - 1], where int64() of a NaN, an
   infinity or a value >= 2^63 is INT64_MIN on x86-64 (cvttss2si), so bin 0. NaN fails every
   comparison and is not counted anywhere.

   percentile_bins(x, kind, m, lo, hi, below, above, bins, pmin, pmax, imin, imax, row0, row1)

   For rows that are whole cells of a histogram's only batch: each row counted as above and
   AIMET's percentile bins searched in it (see search_rows), without a (cells, bins) matrix.

   histogram(x, kind, m, lo, hi, below, above, out, bins, ceiling, row0, row1)

   For rows that are whole cells of a histogram's only batch: each row counted as above into
   a private row of int64 counters, then written to `out` ((cells, bins) C-contiguous float32)
   as histogram.finish writes it: float32(min(count, ceiling)) per bin (ceiling = 2^24, the
   single-threaded histc's), then float32(below) added to bin 0 and float32(above) to the last
   bin, each one float32 addition, in that order. No (cells, bins + 2) int64 matrix.

   The thin Python wrappers (histogram._count_compiled, histogram.searched_percentile_bins,
   histogram.counted_histogram) validate dtypes, shapes and
   contiguity; this module checks only that the buffers are large enough for the arguments.
   The GIL is released while counting. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 512

static inline float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* float16 bits -> float32, exactly, without branches (so that it vectorises): normal
   halves rebias the exponent, subnormal ones are 2^-14 * (1 + mantissa) - 2^-14 (exact),
   infinities and NaN get the all-ones exponent; the sign is put back last. */
static inline float from_f16(uint16_t h)
{
    const uint32_t magnitude = (uint32_t)(h & 0x7fffu) << 13;
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t normal = magnitude + (112u << 23);
    const uint32_t special = magnitude | 0x7f800000u;
    const uint32_t subnormal = to_bits(from_bits(magnitude + (113u << 23)) - 0x1p-14f);
    const uint32_t zero = 0u - (uint32_t)(magnitude < (1u << 23));
    const uint32_t big = 0u - (uint32_t)(magnitude >= (31u << 23));
    return from_bits(sign | (subnormal & zero) | (special & big) | (normal & ~(zero | big)));
}

static inline __attribute__((always_inline)) float load(const void *data, int kind, int64_t i)
{
    if (kind == 0)
        return ((const float *)data)[i];
    uint16_t bits = ((const uint16_t *)data)[i];
    return kind == 1 ? from_f16(bits) : from_bits((uint32_t)bits << 16);
}

/* One row's elements [0, n) added to `row` (bins + 2 counters). Blocks of BLOCK elements:
   a branch-free pass computes every element's bin (uncounted elements go to column `bins`,
   corrected afterwards), then a scalar pass increments the counters. */
static inline __attribute__((always_inline)) void count_row(
    const void *data, int kind, int64_t n, float lo, float hi, float below, float above,
    int64_t bins, int64_t *row)
{
    const float nb = (float)bins;
    const float top = (float)(bins - 1);
    const float d = hi - lo;
    const int32_t dump = (int32_t)bins;
    int32_t index[BLOCK];
    int64_t nbelow = 0, nabove = 0, outside = 0;
    for (int64_t start = 0; start < n; start += BLOCK) {
        const int size = n - start < BLOCK ? (int)(n - start) : BLOCK;
        int32_t b_count = 0, a_count = 0, o_count = 0;
        for (int i = 0; i < size; i++) {
            const float v = load(data, kind, start + i);
            const int in = (v >= lo) & (v <= hi);
            float t = ((v - lo) * nb) / d;
            t = t < 0x1p63f ? t : 0.0f; /* NaN, inf, >= 2^63: INT64_MIN, clipped to 0 */
            t = t > 0.0f ? t : 0.0f;     /* (only uncounted elements are negative) */
            t = t < top ? t : top;
            const int32_t bin = (int32_t)t;
            index[i] = in ? bin : dump;
            o_count += !in;
            b_count += v < below;
            a_count += v > above;
        }
        for (int i = 0; i < size; i++)
            row[index[i]]++;
        nbelow += b_count;
        nabove += a_count;
        outside += o_count;
    }
    row[bins] += nbelow - outside;
    row[bins + 1] += nabove;
}

/* count_row with the value kind fixed in each branch, so that every caller gets the loop
   specialised for float32, float16 and bfloat16. */
static inline __attribute__((always_inline)) void count_kind(
    const void *data, int kind, int64_t n, float lo, float hi, float below, float above,
    int64_t bins, int64_t *row)
{
    if (kind == 0)
        count_row(data, 0, n, lo, hi, below, above, bins, row);
    else if (kind == 1)
        count_row(data, 1, n, lo, hi, below, above, bins, row);
    else
        count_row(data, 2, n, lo, hi, below, above, bins, row);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

CLONES static void count_rows(
    const char *x, int kind, int64_t m, const float *lo, const float *hi, const float *below,
    const float *above, int64_t *out, int64_t bins, int64_t row0, int64_t row1, int64_t col0,
    int64_t col1)
{
    const int64_t itemsize = kind == 0 ? 4 : 2;
    for (int64_t r = row0; r < row1; r++) {
        const char *data = x + (r * m + col0) * itemsize;
        int64_t *row = out + r * (bins + 2);
        count_kind(data, kind, col1 - col0, lo[r], hi[r], below[r], above[r], bins, row);
    }
}

/* Rows [row0, row1), each a whole cell of a histogram's only batch with fewer than 2^23
   values: counted into a private row of counters, then AIMET's percentile search on the
   finished float32 histogram (below added to bin 0, above to the last bin; every count and
   cumulative count an exact integer below 2^24, so float32 equals the integers here):
   vmin = T * pmin, vmax = float32(T * pmax) / 100 in float32, and each index is the first
   bin whose cumulative count is >= the target (bins when none is). */
CLONES static void search_rows(
    const char *x, int kind, int64_t m, const float *lo, const float *hi, const float *below,
    const float *above, int64_t bins, float pmin, float pmax, int64_t *imin, int64_t *imax,
    int64_t *row, int64_t row0, int64_t row1)
{
    const int64_t itemsize = kind == 0 ? 4 : 2;
    for (int64_t r = row0; r < row1; r++) {
        const char *data = x + r * m * itemsize;
        memset(row, 0, (size_t)(bins + 2) * sizeof *row);
        count_kind(data, kind, m, lo[r], hi[r], below[r], above[r], bins, row);
        row[0] += row[bins];
        row[bins - 1] += row[bins + 1];
        int64_t total = 0;
        for (int64_t j = 0; j < bins; j++)
            total += row[j];
        const float t = (float)total;
        const float vmin = t * pmin;
        const float vmax = (t * pmax) / 100.0f;
        int64_t cum = 0, j = 0;
        for (; j < bins && !((float)(cum + row[j]) >= vmin); j++)
            cum += row[j];
        imin[r] = j;
        cum = 0;
        for (j = 0; j < bins && !((float)(cum + row[j]) >= vmax); j++)
            cum += row[j];
        imax[r] = j;
    }
}

/* Rows [row0, row1), each a whole cell of a histogram's only batch: counted into `row`
   (bins + 2 int64 counters), then finished into out[r] in histogram.finish's float32
   operations. int64 -> float32 conversions round to nearest even, as numpy's astype does
   (cvtsi2ss); the additions are plain float32 additions (no FMA, no reordering). */
CLONES static void finish_rows(
    const char *x, int kind, int64_t m, const float *lo, const float *hi, const float *below,
    const float *above, int64_t bins, int64_t ceiling, float *out, int64_t *row, int64_t row0,
    int64_t row1)
{
    const int64_t itemsize = kind == 0 ? 4 : 2;
    for (int64_t r = row0; r < row1; r++) {
        const char *data = x + r * m * itemsize;
        memset(row, 0, (size_t)(bins + 2) * sizeof *row);
        count_kind(data, kind, m, lo[r], hi[r], below[r], above[r], bins, row);
        float *h = out + r * bins;
        for (int64_t j = 0; j < bins; j++)
            h[j] = (float)(row[j] < ceiling ? row[j] : ceiling);
        h[0] = h[0] + (float)row[bins];
        h[bins - 1] = h[bins - 1] + (float)row[bins + 1];
    }
}

/* What every entry point reads: the values (rows x m; float32, or float16 / bfloat16 bits)
   and each row's counting range and out-of-range thresholds. */
typedef struct {
    Py_buffer x, lo, hi, below, above;
} Rows;

static int too_small(const Py_buffer *view, int64_t items, int64_t itemsize, const char *fn,
                     const char *name)
{
    if (items < 0 || view->len < items * itemsize) {
        PyErr_Format(PyExc_ValueError, "_histc.%s: buffer %s is too small", fn, name);
        return 1;
    }
    return 0;
}

/* ValueError unless `in` holds rows [0, row1) of m values of `kind` and their per-row
   floats. */
static int rows_too_small(const Rows *in, int kind, int64_t m, int64_t row1, const char *fn)
{
    return too_small(&in->x, row1 * m, kind == 0 ? 4 : 2, fn, "x") ||
           too_small(&in->lo, row1, 4, fn, "lo") || too_small(&in->hi, row1, 4, fn, "hi") ||
           too_small(&in->below, row1, 4, fn, "below") ||
           too_small(&in->above, row1, 4, fn, "above");
}

static void release_rows(Rows *in)
{
    PyBuffer_Release(&in->x);
    PyBuffer_Release(&in->lo);
    PyBuffer_Release(&in->hi);
    PyBuffer_Release(&in->below);
    PyBuffer_Release(&in->above);
}

#define ROWS_ARGS(in) \
    (const char *)(in).x.buf, kind, m, (const float *)(in).lo.buf, (const float *)(in).hi.buf, \
        (const float *)(in).below.buf, (const float *)(in).above.buf

static PyObject *count(PyObject *self, PyObject *args)
{
    (void)self;
    Rows in;
    Py_buffer out;
    int kind;
    long long m, bins, row0, row1, col0, col1;
    if (!PyArg_ParseTuple(args, "y*iLy*y*y*y*w*LLLLL", &in.x, &kind, &m, &in.lo, &in.hi,
                          &in.below, &in.above, &out, &bins, &row0, &row1, &col0, &col1))
        return NULL;
    PyObject *result = NULL;
    if (kind < 0 || kind > 2 || bins < 1 || bins > (1 << 24) || m < 0 || row0 < 0 ||
        row1 < row0 || col0 < 0 || col1 < col0 || col1 > m) {
        PyErr_SetString(PyExc_ValueError, "_histc.count: invalid arguments");
        goto done;
    }
    if (rows_too_small(&in, kind, m, row1, "count") ||
        too_small(&out, row1 * (bins + 2), 8, "count", "out"))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    count_rows(ROWS_ARGS(in), (int64_t *)out.buf, bins, row0, row1, col0, col1);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release_rows(&in);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *percentile_bins(PyObject *self, PyObject *args)
{
    (void)self;
    Rows in;
    Py_buffer imin, imax;
    int kind;
    long long m, bins, row0, row1;
    double pmin, pmax;
    if (!PyArg_ParseTuple(args, "y*iLy*y*y*y*Lddw*w*LL", &in.x, &kind, &m, &in.lo, &in.hi,
                          &in.below, &in.above, &bins, &pmin, &pmax, &imin, &imax, &row0,
                          &row1))
        return NULL;
    PyObject *result = NULL;
    int64_t *row = NULL;
    if (kind < 0 || kind > 2 || bins < 1 || bins > (1 << 24) || m < 0 || m >= (1 << 23) ||
        row0 < 0 || row1 < row0) {
        PyErr_SetString(PyExc_ValueError, "_histc.percentile_bins: invalid arguments");
        goto done;
    }
    if (rows_too_small(&in, kind, m, row1, "percentile_bins") ||
        too_small(&imin, row1, 8, "percentile_bins", "imin") ||
        too_small(&imax, row1, 8, "percentile_bins", "imax"))
        goto done;
    row = PyMem_RawMalloc((size_t)(bins + 2) * sizeof *row);
    if (row == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    search_rows(ROWS_ARGS(in), bins, (float)pmin, (float)pmax, (int64_t *)imin.buf,
                (int64_t *)imax.buf, row, row0, row1);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(row);
    release_rows(&in);
    PyBuffer_Release(&imin);
    PyBuffer_Release(&imax);
    return result;
}

static PyObject *histogram(PyObject *self, PyObject *args)
{
    (void)self;
    Rows in;
    Py_buffer out;
    int kind;
    long long m, bins, ceiling, row0, row1;
    if (!PyArg_ParseTuple(args, "y*iLy*y*y*y*w*LLLL", &in.x, &kind, &m, &in.lo, &in.hi,
                          &in.below, &in.above, &out, &bins, &ceiling, &row0, &row1))
        return NULL;
    PyObject *result = NULL;
    int64_t *row = NULL;
    if (kind < 0 || kind > 2 || bins < 1 || bins > (1 << 24) || ceiling < 0 || m < 0 ||
        row0 < 0 || row1 < row0) {
        PyErr_SetString(PyExc_ValueError, "_histc.histogram: invalid arguments");
        goto done;
    }
    if (rows_too_small(&in, kind, m, row1, "histogram") ||
        too_small(&out, row1 * bins, 4, "histogram", "out"))
        goto done;
    row = PyMem_RawMalloc((size_t)(bins + 2) * sizeof *row);
    if (row == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    finish_rows(ROWS_ARGS(in), bins, ceiling, (float *)out.buf, row, row0, row1);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(row);
    release_rows(&in);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS,
     "count(x, kind, m, lo, hi, below, above, out, bins, row0, row1, col0, col1): "
     "histogram.count's counts of rows [row0, row1), elements [col0, col1), added to out"},
    {"percentile_bins", percentile_bins, METH_VARARGS,
     "percentile_bins(x, kind, m, lo, hi, below, above, bins, pmin, pmax, imin, imax, row0, "
     "row1): each row counted and searched: AIMET's percentile bins into imin, imax"},
    {"histogram", histogram, METH_VARARGS,
     "histogram(x, kind, m, lo, hi, below, above, out, bins, ceiling, row0, row1): each row "
     "counted and finished (histogram.finish of a first batch) into float32 out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_histc", "qcalc.core.histogram.count in C (see histc.c)", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__histc(void) { return PyModule_Create(&module); }
