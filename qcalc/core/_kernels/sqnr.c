/* qcalc.core._sqnr: the SQNR / TF-enhanced candidate scoring of qcalc.core.histogram, bit for
 * bit (histogram._noise_blocks and np.argmin).
 *
 * A candidate (delta d, offset o) scores every bin (mid m, count w) with the float32 term
 *     q = rint(m / d - o); clipped = q < 0 or q > n; q = clip(q, 0, n)
 *     t = |(q + o) * d - m|^p * w, times gamma where clipped
 * and its noise is np.sum over the bins: 0 + numpy's pairwise sum (loops_utils.h.src):
 * runs of n > 128 terms split in two at n / 2 rounded down to a multiple of 8; a leaf of
 * 8 <= n <= 128 terms sums them in 8 lanes (lane j: terms j, j + 8, ... in order), combines
 * ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)) and adds the n % 8 last terms one by one;
 * a leaf of n < 8 terms adds them one by one to -0.0. Every float operation here is the
 * numpy path's, in its order (-ffp-contract=off: no FMA), so the bits are the same.
 *
 * The fast path (per cell, when every term is provably finite and >= +0: finite mids, deltas
 * > 0, offsets and gamma >= 0, counts >= +0 with no -0, and an overflow bound) uses two exact
 * shortcuts:
 *  - empty bins: their term is exactly +0 and x + (+0) == x for every x >= +0, so removing
 *    them from a lane changes no rounding; each lane keeps its non-empty bins in order and is
 *    padded at the end with +0 terms (a finite mid, count 0): the same lane sums.
 *  - pruning: every sum of non-negative terms rounded to nearest is >= (1 - u) x the exact
 *    sum (u = 2^-24) and <= (1 + u) x it, so after any set of computed leaves / lane partials
 *    v_i, the noise F >= (1 - 2(D + 2)u) * sum v_i =: L (D bounds the roundings on any path of
 *    the tree). A candidate with L > best cannot win, nor one with L == best after the best's
 *    index (np.argmin takes the first minimum): it is dropped. The winner is fully computed.
 * Any other cell takes the full computation of every candidate and numpy's argmin (first NaN,
 * else first minimum). p other than 1 and 2 is left to numpy (its power may be SVML).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* 8-float vectors are passed between always-inlined functions only: no ABI concern */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define INLINE static inline __attribute__((always_inline))

#define LEAF 128   /* numpy's PW_BLOCKSIZE */
#define CHECK 8    /* rounds of 8 terms between two pruning checks in a leaf */

typedef struct {
    float n;      /* num_steps */
    float gamma;  /* applied to clipped terms when use_gamma */
    int use_gamma;
} Params;

/* One term, numpy's operations in order. np.clip propagates NaN (_NPY_MAX / _NPY_MIN). */
static inline float term(float m, float w, float d, float o, Params P, int square)
{
    float t = m / d;
    t = t - o;
    t = rintf(t);
    int clipped = (t < 0.0f) | (t > P.n);
    t = isnan(t) ? t : (t > 0.0f ? t : 0.0f);
    t = isnan(t) ? t : (t < P.n ? t : P.n);
    t = t + o;
    t = t * d;
    t = t - m;
    t = square ? t * t : fabsf(t);
    t = t * w;
    return (P.use_gamma && clipped) ? t * P.gamma : t;
}

/* The same term for 8 bins at once (GCC / clang vector extensions: AVX2 or two SSE2 halves,
 * lane by lane the same IEEE operations). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

INLINE v8f pick(v8i mask, v8f a, v8f b) /* mask ? a : b, lane by lane */
{
    return (v8f)(((v8i)a & mask) | ((v8i)b & ~mask));
}

INLINE v8f term8(v8f m, v8f w, float d, float o, Params P, int square)
{
    const v8f zero = {0}, n = zero + P.n, big = zero + 8388608.0f; /* 2^23 */
    const v8i sign = (v8i){0} + INT32_MIN; /* the sign bit */
    v8f t = m / d;
    t = t - o;
    /* rint (ties to even): below 2^23, adding and subtracting 2^23 rounds |t| to an integer
     * (ulp 1 there); the sign is put back (rint(-0.3) = -0.0); larger |t|, inf and NaN are
     * kept as they are (already integers, or NaN) */
    v8f a = (v8f)((v8i)t & ~sign);
    v8f r = (v8f)((v8i)((a + big) - big) | ((v8i)t & sign));
    t = pick(a < big, r, t);
    v8i clipped = (t < zero) | (t > n);
    v8i nan = t != t;
    t = pick(nan, t, pick(t > zero, t, zero));
    t = pick(nan, t, pick(t < n, t, n));
    t = t + o;
    t = t * d;
    t = t - m;
    t = square ? t * t : (v8f)((v8i)t & ~sign);
    t = t * w;
    return P.use_gamma ? pick(clipped, t * P.gamma, t) : t;
}

/* acc (+)= the terms of rounds [r0, r1) of 8 lanes (m, w interleaved as m[8r + j]);
 * round 0 assigns, as numpy's r[j] = first term. */
INLINE void lanes(const float *m, const float *w, int r0, int r1, float d, float o,
                         Params P, int square, float acc[8])
{
    v8f sum;
    int r = r0;
    if (r == 0) {
        memcpy(&sum, m, 32); /* unaligned loads */
        v8f wv;
        memcpy(&wv, w, 32);
        sum = term8(sum, wv, d, o, P, square);
        r = 1;
    } else {
        memcpy(&sum, acc, 32);
    }
    for (; r < r1; r++) {
        v8f mv, wv;
        memcpy(&mv, m + 8 * r, 32);
        memcpy(&wv, w + 8 * r, 32);
        sum = sum + term8(mv, wv, d, o, P, square);
    }
    memcpy(acc, &sum, 32);
}

CLONES static void lanes_p2(const float *m, const float *w, int r0, int r1, float d, float o,
                            Params P, float acc[8])
{
    lanes(m, w, r0, r1, d, o, P, 1, acc);
}

CLONES static void lanes_p1(const float *m, const float *w, int r0, int r1, float d, float o,
                            Params P, float acc[8])
{
    lanes(m, w, r0, r1, d, o, P, 0, acc);
}

/* The float sum of the 16 terms of (m, w): 4 roundings on any path (fewer than the tree's
 * D, which the pruning margin allows for). */
CLONES static float probe_sum(const float *m, const float *w, float d, float o, Params P,
                              int square)
{
    float a[8];
    if (square)
        lanes(m, w, 0, 2, d, o, P, 1, a);
    else
        lanes(m, w, 0, 2, d, o, P, 0, a);
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* ------------------------------------------------------------------------------ the tree */

typedef struct {
    Py_ssize_t start, size;  /* the bins of this leaf */
    Py_ssize_t at;           /* its first float in the (compacted) lane arrays */
    int rounds;              /* rounds of 8 lanes (>= 1 for size >= 8) */
    Py_ssize_t rest_at;      /* its tail terms (size % 8, or all of a leaf < 8) */
    int rest;
} Leaf;

/* numpy's split into leaves, in order; returns the leaf count, *depth = tree levels. */
static int split(Py_ssize_t start, Py_ssize_t n, Leaf *out, int k, int level, int *depth)
{
    if (n <= LEAF) {
        out[k].start = start;
        out[k].size = n;
        if (level > *depth)
            *depth = level;
        return k + 1;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    k = split(start, n2, out, k, level + 1, depth);
    return split(start + n2, n - n2, out, k, level + 1, depth);
}

/* The tree over the leaf values, as numpy adds the halves. */
static float combine(const Leaf *leaves, const float *value, int *k, Py_ssize_t n)
{
    if (n <= LEAF)
        return value[(*k)++];
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    float a = combine(leaves, value, k, n2);
    float b = combine(leaves, value, k, n - n2);
    return a + b;
}

typedef struct {
    Py_ssize_t bins;
    int nleaves;
    Leaf *leaves;
    float *m, *w;      /* lane arrays: leaf L's round r lane j at leaves[L].at + 8r + j */
    float *rm, *rw;    /* tail terms */
    int *order_in, *order_out;  /* leaf orders for pruning (centre first / ends first) */
    float *value;      /* leaf values of the candidate being scored */
    double margin;     /* 1 - 2(D + 2)u: L = margin * sum of partial sums */
    float probe_m[16], probe_w[16]; /* up to 8 outermost non-empty bins at each end */
} Cell;

/* The probe: distinct non-empty bins, the 8 first and the 8 last of idx[0..k) (+0 terms pad
 * it). A candidate that clips too much has most of its noise there. */
static void probe(Cell *c, const float *mid, const float *cnt, const int32_t *idx, int k)
{
    int n = 0;
    for (int i = 0; i < k && i < 8; i++, n++) {
        c->probe_m[n] = mid[idx[i]];
        c->probe_w[n] = cnt[idx[i]];
    }
    for (int i = k - 1; i >= 8 && n < 16; i--, n++) {
        c->probe_m[n] = mid[idx[i]];
        c->probe_w[n] = cnt[idx[i]];
    }
    for (; n < 16; n++) {
        c->probe_m[n] = mid[0];
        c->probe_w[n] = 0.0f;
    }
}

/* The lane layout of one cell: all bins (compact = 0) or only the non-empty ones, idx[0..k)
 * in increasing order. */
static void layout(Cell *c, const float *mid, const float *cnt, int compact, const int32_t *idx,
                   int k)
{
    if (compact)
        probe(c, mid, cnt, idx, k);
    Py_ssize_t at = 0, rat = 0;
    int p = 0; /* the next non-empty bin, idx[p] */
    for (int L = 0; L < c->nleaves; L++) {
        Leaf *f = &c->leaves[L];
        Py_ssize_t s = f->start, n = f->size, body = n < 8 ? 0 : n - n % 8;
        f->at = at;
        f->rest_at = rat;
        f->rest = 0;
        if (!compact || n < 8) {
            f->rounds = (int)(body / 8);
            memcpy(c->m + at, mid + s, body * sizeof(float));
            memcpy(c->w + at, cnt + s, body * sizeof(float));
            for (Py_ssize_t i = body; i < n; i++) {
                if (compact && n >= 8 && cnt[s + i] == 0.0f)
                    continue;
                c->rm[rat] = mid[s + i];
                c->rw[rat] = cnt[s + i];
                rat++;
                f->rest++;
            }
            while (p < k && idx[p] < s + n)
                p++;
        } else {
            /* each non-empty bin at its lane's next slot; the 8 lane lengths (<= 16 each) are
             * the bytes of len */
            uint64_t len = 0;
            for (; p < k && idx[p] < s + body; p++) {
                int i = idx[p], j = (int)((i - s) & 7);
                int r = (int)(len >> (8 * j)) & 0xff;
                c->m[at + 8 * r + j] = mid[i];
                c->w[at + 8 * r + j] = cnt[i];
                len += (uint64_t)1 << (8 * j);
            }
            int rounds = 1;
            for (int j = 0; j < 8; j++) {
                int r = (int)(len >> (8 * j)) & 0xff;
                rounds = r > rounds ? r : rounds;
            }
            for (int j = 0; j < 8; j++)
                for (int r = (int)(len >> (8 * j)) & 0xff; r < rounds; r++) {
                    c->m[at + 8 * r + j] = mid[s]; /* +0 terms (finite mid, count 0) */
                    c->w[at + 8 * r + j] = 0.0f;
                }
            f->rounds = rounds;
            for (; p < k && idx[p] < s + n; p++) {
                c->rm[rat] = mid[idx[p]];
                c->rw[rat] = cnt[idx[p]];
                rat++;
                f->rest++;
            }
        }
        at += 8 * (Py_ssize_t)f->rounds;
    }
}

/* Leaf L's value for (d, o); with limit, stops early (returns 1) when the lower bound
 * `done` + this leaf's partial lanes shows the candidate loses. */
static int leaf(const Cell *c, int L, float d, float o, Params P, int square, const double *limit,
                int strict, double done, float *out)
{
    const Leaf *f = &c->leaves[L];
    float res;
    if (f->size < 8) {
        res = -0.0f;
    } else {
        float acc[8];
        const float *m = c->m + f->at, *w = c->w + f->at;
        for (int r = 0; r < f->rounds; r += CHECK) {
            int r1 = r + CHECK < f->rounds ? r + CHECK : f->rounds;
            (square ? lanes_p2 : lanes_p1)(m, w, r, r1, d, o, P, acc);
            if (limit && r1 < f->rounds) {
                double part = done;
                for (int j = 0; j < 8; j++)
                    part += acc[j];
                part *= c->margin;
                if (part > *limit || (!strict && part == *limit))
                    return 1;
            }
        }
        res = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    for (int i = 0; i < f->rest; i++)
        res += term(c->rm[f->rest_at + i], c->rw[f->rest_at + i], d, o, P, square);
    *out = res;
    return 0;
}

/* The noise of (d, o): 0 + the pairwise sum. With limit (the best noise so far; strict: the
 * candidate comes before the best, so only a larger noise loses), returns 1 as soon as the
 * candidate provably loses. */
static int score(Cell *c, float d, float o, Params P, int square, const double *limit,
                 int strict, const int *order, float *noise)
{
    double done = 0.0;
    if (limit) { /* the outermost bins' terms first: a sum of terms bounds F as well */
        double sum = probe_sum(c->probe_m, c->probe_w, d, o, P, square) * c->margin;
        if (sum > *limit || (!strict && sum == *limit))
            return 1;
    }
    for (int i = 0; i < c->nleaves; i++) {
        int L = order[i];
        if (leaf(c, L, d, o, P, square, limit, strict, done, &c->value[L]))
            return 1;
        done += c->value[L];
        if (limit && i + 1 < c->nleaves) {
            double bound = done * c->margin;
            if (bound > *limit || (!strict && bound == *limit))
                return 1;
        }
    }
    int k = 0;
    *noise = 0.0f + combine(c->leaves, c->value, &k, c->bins);
    return 0;
}

/* idx[0..k) = the bins [i0, nb) with a count != 0 (NaN included, -0 not), in order;
 * returns k. */
static int nonempty_from(const float *cnt, int i0, int nb, int32_t *idx)
{
    int n = 0;
    for (int i = i0; i < nb; i++) {
        uint32_t w;
        memcpy(&w, &cnt[i], 4);
        idx[n] = i;
        n += (w & 0x7fffffffu) != 0;
    }
    return n;
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_COMPACT 1
/* the set bits of each byte value, as 8 packed byte indices (low first) */
static uint64_t bit_lanes[256];

static void init_bit_lanes(void)
{
    for (int v = 0; v < 256; v++) {
        uint64_t x = 0;
        for (int b = 0, n = 0; b < 8; b++)
            if (v >> b & 1)
                x |= (uint64_t)b << (8 * n++);
        bit_lanes[v] = x;
    }
}

/* nonempty_scalar, 8 bins at a time (a mask of the non-empty ones picks their indices) */
__attribute__((target("avx2,popcnt"))) static int nonempty_avx2(const float *cnt, int nb,
                                                                 int32_t *idx)
{
    const __m256i abs = _mm256_set1_epi32(0x7fffffff), zero = _mm256_setzero_si256();
    int n = 0, i = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256i w = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(cnt + i)), abs);
        unsigned mask = ~(unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(
                            _mm256_cmpeq_epi32(w, zero))) & 0xffu;
        __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)bit_lanes[mask]));
        _mm256_storeu_si256((__m256i *)(idx + n),
                            _mm256_add_epi32(lanes, _mm256_set1_epi32(i)));
        n += __builtin_popcount(mask);
    }
    return n + nonempty_from(cnt, i, nb, idx + n);
}
#endif

static int nonempty(const float *cnt, int nb, int32_t *idx)
{
#ifdef HAVE_AVX2_COMPACT
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt"))
        return nonempty_avx2(cnt, nb, idx);
#endif
    return nonempty_from(cnt, 0, nb, idx);
}

/* The bins of one cell: mid[i] as histogram._bin_mids (centre + width * i, two roundings, no
 * FMA) and idx[0..*k) the non-empty bins (count != 0) in order. Returns whether every mid and
 * count is finite and no count has its sign bit set (the fast path's premise for the bins),
 * with the largest |mid| and count. Branch-free (vectorised): non-negative floats order as
 * their bit patterns, and a set sign bit or an inf / NaN makes a pattern >= 0x7f800000. */
CLONES static int scan(float centre, float width, int nb, const float *cnt, float *mid,
                       int32_t *idx, int *k, float *mmax, float *wmax)
{
    uint32_t mbits = 0, wbits = 0;
    for (int i = 0; i < nb; i++) {
        float m = centre + width * (float)i;
        mid[i] = m;
        uint32_t a, w;
        memcpy(&a, &m, 4);
        memcpy(&w, &cnt[i], 4);
        a &= 0x7fffffffu;
        mbits = a > mbits ? a : mbits;
        wbits = w > wbits ? w : wbits;
    }
    *k = nonempty(cnt, nb, idx);
    memcpy(mmax, &mbits, 4);
    memcpy(wmax, &wbits, 4);
    return mbits < 0x7f800000u && wbits < 0x7f800000u;
}

/* Whether every term of the cell is finite and >= +0 (and never -0): the fast path's
 * premise, given scan's. The bound on |e| = |(q + o) * d - m| allows the roundings (factors
 * 1 + 2^-20). */
static int safe_cell(float mmax, float wmax, const float *dl, const float *of, Py_ssize_t nc,
                     Params P, int square)
{
    if (P.use_gamma && (!(P.gamma >= 0.0f) || !isfinite(P.gamma) || signbit(P.gamma)))
        return 0;
    double g = P.use_gamma && P.gamma > 1.0f ? P.gamma : 1.0, slack = 1.0 + 1.0 / (1 << 20);
    for (Py_ssize_t k = 0; k < nc; k++) {
        if (!(dl[k] > 0.0f) || !isfinite(dl[k]) || !isfinite(of[k]))
            return 0;
        double e = (((double)P.n + fabs((double)of[k])) * dl[k] * slack * slack + mmax) * slack;
        double t = (square ? e * e : e) * slack * (wmax > 1.0 ? wmax : 1.0) * slack * g * slack;
        if (!(t < 1e38))
            return 0;
    }
    return 1;
}

typedef struct {
    Py_ssize_t cells, bins, ncand, row0, row1;
    const float *grid;  /* (cells, 2): the first bin's centre, the bin width */
    const float *cnt, *dl, *of;
    float *noise;     /* (cells, ncand) or NULL: prune */
    int64_t *best;    /* (cells,) */
    Params P;
    int square;
} Job;

/* numpy's argmin over one row: the first NaN, else the first minimum. */
static Py_ssize_t argmin(const float *x, Py_ssize_t n)
{
    Py_ssize_t b = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (isnan(x[k]))
            return k;
        if (x[k] < x[b])
            b = k;
    }
    return b;
}

static int run(const Job *J)
{
    Py_ssize_t nb = J->bins, nc = J->ncand;
    int maxleaves = (int)(nb / 64 + 2), depth = 0;
    Cell c;
    memset(&c, 0, sizeof c);
    c.bins = nb;
    c.leaves = malloc(maxleaves * sizeof(Leaf));
    c.m = malloc((nb + 8 * maxleaves) * sizeof(float));
    c.w = malloc((nb + 8 * maxleaves) * sizeof(float));
    c.rm = malloc((nb + 8) * sizeof(float));
    c.rw = malloc((nb + 8) * sizeof(float));
    c.value = malloc(maxleaves * sizeof(float));
    c.order_in = malloc(maxleaves * sizeof(int));
    c.order_out = malloc(maxleaves * sizeof(int));
    float *row = malloc((nc > 0 ? nc : 1) * sizeof(float));
    float *mid = malloc(nb * sizeof(float));
    int32_t *idx = malloc((nb + 8) * sizeof(int32_t)); /* nonempty_avx2 writes 8 at a time */
    int ok = c.leaves && c.m && c.w && c.rm && c.rw && c.value && c.order_in && c.order_out &&
             row && mid && idx;
    if (ok) {
        c.nleaves = split(0, nb, c.leaves, 0, 0, &depth);
        /* roundings on a path: a leaf's lane (<= 15), combine (3), tail (<= 7), levels, +0 */
        c.margin = 1.0 - 2.0 * (25 + depth + 1 + 2) * ldexp(1.0, -24);
        for (int i = 0; i < c.nleaves; i++) /* ends first: 0, last, 1, last - 1, ... */
            c.order_out[i] = i % 2 ? c.nleaves - 1 - i / 2 : i / 2;
        for (int i = 0; i < c.nleaves; i++) /* centre first */
            c.order_in[i] = c.order_out[c.nleaves - 1 - i];
    }
    Py_ssize_t guess = nc * 3 / 4;
    for (Py_ssize_t cell = J->row0; ok && cell < J->row1; cell++) {
        const float *cnt = J->cnt + cell * nb;
        const float *dl = J->dl + cell * nc, *of = J->of + cell * nc;
        float *out = J->noise ? J->noise + cell * nc : row;
        int k;
        float mmax, wmax;
        int fast = scan(J->grid[2 * cell], J->grid[2 * cell + 1], (int)nb, cnt, mid, idx, &k,
                        &mmax, &wmax) &&
                   safe_cell(mmax, wmax, dl, of, nc, J->P, J->square);
        layout(&c, mid, cnt, fast, idx, k);
        if (!fast || J->noise) { /* every candidate, in full */
            for (Py_ssize_t k = 0; k < nc; k++)
                score(&c, dl[k], of[k], J->P, J->square, NULL, 0, c.order_in, &out[k]);
            J->best[cell] = argmin(out, nc);
            continue;
        }
        /* the guess first, then outwards from it (noise is roughly unimodal in the delta):
         * the best so far bounds the others early */
        Py_ssize_t b = guess < nc ? guess : nc - 1, g0 = b;
        float bestv;
        score(&c, dl[b], of[b], J->P, J->square, NULL, 0, c.order_in, &bestv);
        for (Py_ssize_t dist = 1; dist < nc; dist++)
            for (int side = -1; side <= 1; side += 2) {
                Py_ssize_t k = g0 + side * dist;
                if (k < 0 || k >= nc)
                    continue;
                double limit = bestv;
                float v;
                /* a candidate clipping more than the best: its noise is at the ends */
                const int *order = dl[k] < dl[b] ? c.order_out : c.order_in;
                if (score(&c, dl[k], of[k], J->P, J->square, &limit, k < b, order, &v))
                    continue;
                if (v < bestv || (v == bestv && k < b)) {
                    bestv = v;
                    b = k;
                }
            }
        J->best[cell] = b;
        guess = b;
    }
    free(c.leaves);
    free(c.m);
    free(c.w);
    free(c.rm);
    free(c.rw);
    free(c.value);
    free(c.order_in);
    free(c.order_out);
    free(row);
    free(mid);
    free(idx);
    return ok;
}

static int get(PyObject *obj, Py_buffer *view, Py_ssize_t items, Py_ssize_t itemsize,
               int writable, const char *name)
{
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS) < 0)
        return 0;
    if (view->itemsize != itemsize || view->len != items * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items", name, items);
        PyBuffer_Release(view);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(search_doc,
"search(grid, counts, deltas, offsets, best, noise, cells, bins, ncand, num_steps, gamma, p,\n"
"       row0, row1)\n\n"
"Scores rows [row0, row1): best[row] = np.argmin(noise[row]) of histogram.sqnr_noise.\n"
"grid: (cells, 2) float32, the first bin's centre and the bin width; counts: (cells, bins)\n"
"float32; deltas, offsets: (cells, ncand) float32; best: (cells,)\n"
"int64; noise: (cells, ncand) float32 filled in full, or None (pruned search). p: 1 or 2.\n"
"C-contiguous buffers; the caller validates dtypes (histogram._compiled_search).");

static PyObject *search(PyObject *self, PyObject *args)
{
    PyObject *o_grid, *o_cnt, *o_dl, *o_of, *o_best, *o_noise;
    Py_ssize_t cells, bins, ncand, row0, row1;
    double n, gamma, p;
    if (!PyArg_ParseTuple(args, "OOOOOOnnndddnn", &o_grid, &o_cnt, &o_dl, &o_of, &o_best,
                          &o_noise, &cells, &bins, &ncand, &n, &gamma, &p, &row0, &row1))
        return NULL;
    if (cells < 0 || bins < 1 || bins > INT32_MAX / 4 || ncand < 1 || row0 < 0 || row1 > cells || row0 > row1 ||
        (p != 1.0 && p != 2.0)) {
        PyErr_SetString(PyExc_ValueError, "search: bad sizes, rows or p");
        return NULL;
    }
    Py_buffer v[6];
    int got = 0, ok = 1;
    PyObject *objs[6] = {o_grid, o_cnt, o_dl, o_of, o_best, o_noise};
    Py_ssize_t items[6] = {cells * 2, cells * bins, cells * ncand, cells * ncand, cells,
                           cells * ncand};
    const char *names[6] = {"grid", "counts", "deltas", "offsets", "best", "noise"};
    int nbuf = o_noise == Py_None ? 5 : 6;
    for (; got < nbuf; got++)
        if (!get(objs[got], &v[got], items[got], got == 4 ? 8 : 4, got >= 4, names[got])) {
            ok = 0;
            break;
        }
    if (ok) {
        Job J = {cells, bins, ncand, row0, row1, v[0].buf, v[1].buf, v[2].buf, v[3].buf,
                 nbuf == 6 ? v[5].buf : NULL, v[4].buf,
                 {(float)n, (float)gamma, gamma != 1.0}, p == 2.0};
        Py_BEGIN_ALLOW_THREADS
        ok = run(&J);
        Py_END_ALLOW_THREADS
        if (!ok)
            PyErr_NoMemory();
    }
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&v[i]);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"search", search, METH_VARARGS, search_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sqnr",
                                    "SQNR candidate scoring (qcalc.core.histogram)", -1, methods};

PyMODINIT_FUNC PyInit__sqnr(void)
{
#ifdef HAVE_AVX2_COMPACT
    init_bit_lanes();
#endif
    return PyModule_Create(&module);
}
