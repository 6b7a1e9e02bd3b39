# distutils: language = c++
"""Rotated (oriented-box) NMS kernel with Ultralytics' semantics (C++ inside Cython).

Ultralytics 8.4's ``non_max_suppression(..., rotated=True)`` calls
``TorchNMS.fast_nms(boxes, scores, iou, iou_func=batch_probiou)``:

* ``order = torch.argsort(scores, descending=True)`` (``stable=False``): torch's CPU sort runs
  libstdc++'s ``std::sort`` with the comparator ``(isnan(l) && !isnan(r)) || l > r`` on
  (value, index) pairs; this module calls the same ``std::sort``, so ties come out identically.
* Fast-NMS, not greedy NMS: ``ious.triu_(1)``; box ``j`` (in sorted order) is kept iff no earlier
  box ``i < j`` has ``probiou(i, j) > thr``, *whether or not box i is itself kept*. The float32
  IoU is compared with ``float32(thr)`` (torch casts the Python scalar to the tensor's dtype).
  A negative threshold makes the zeroed lower triangle suppress everything (empty result).
* ``batch_probiou`` arithmetic, float32, operation by operation (no FMA contraction: setup.py
  builds with ``-ffp-contract=off``), eps ``float32(1e-7)``, ``clamp(eps, 100)``, NaN propagating.
  The transcendental functions (cos, sin, log, exp) are evaluated in double and rounded to
  float32 (correctly rounded); torch computes them with MKL VML, which can differ by 1 ulp.
  Where the Bhattacharyya distance is provably >= 20 (``t1 + t2 >= 28.1`` and ``t3 >= log(eps)/2``),
  ``1 - exp(-bd)`` rounds to exactly 1 whatever the exp, so the IoU is the constant
  ``1 - sqrt(1 + eps) < 0`` and never suppresses: the log/exp are skipped there.

The wrappers in ``modelserve._rotated`` validate everything; these functions trust their inputs,
run without the GIL and never raise (they return -1 when out of memory).
"""

from libc.stdint cimport int64_t


cdef extern from *:
    """
    #include <algorithm>
    #include <cmath>
    #include <cstdint>
    #include <cstdlib>
    #include <cstring>

    struct ms_okv { float v; int64_t i; };

    static const float MS_OBB_EPS = 1e-7f;

    /* torch's CPU argsort(descending=True, stable=False): std::sort with KeyValueCompDesc. */
    static inline void ms_obb_sort_desc(ms_okv *a, Py_ssize_t n) {
        std::sort(a, a + n, [](const ms_okv &l, const ms_okv &r) {
            return (std::isnan(l.v) && !std::isnan(r.v)) || (l.v > r.v);
        });
    }

    /* torch.clamp(min=lo) / clamp(lo, hi): NaN propagates. */
    static inline float ms_clamp_lo(float x, float lo) { return x < lo ? lo : x; }
    static inline float ms_clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

    /* _get_covariance_matrix of one xywhr box: a, b, c and the clamped determinant. */
    static inline void ms_obb_cov(const float *r, float *A, float *B, float *C, float *D) {
        const float w = r[2], h = r[3], t = r[4];
        const float a = (w * w) / 12.0f + 0.0f, b = (h * h) / 12.0f + 0.0f;
        const float cs = (float)std::cos((double)t), sn = (float)std::sin((double)t);
        const float cos2 = cs * cs, sin2 = sn * sn;
        *A = a * cos2 + b * sin2;
        *B = a * sin2 + b * cos2;
        *C = (a - b) * cs * sn;
        *D = ms_clamp_lo(*A * *B - *C * *C, 0.0f);
    }

    /* batch_probiou(box_i, box_j) given both boxes' centres and covariances (i is the row).
       skip: allow the shortcut (only valid when the caller compares with a threshold >= 0). */
    static inline float ms_obb_iou(float x1, float y1, float a1, float b1, float c1, float d1,
                                   float x2, float y2, float a2, float b2, float c2, float d2,
                                   int skip, float K) {
        const float eps = MS_OBB_EPS;
        const float sa = a1 + a2, sb = b1 + b2, sc = c1 + c2;
        const float dy = y1 - y2, dx = x1 - x2;
        const float num = sa * sb - sc * sc;
        const float den = num + eps;
        const float t1 = ((sa * (dy * dy) + sb * (dx * dx)) / den) * 0.25f;
        const float t2 = ((sc * (x2 - x1) * dy) / den) * 0.5f;
        const float t12 = t1 + t2;
        if (skip && num > 0.0f && t12 >= 28.1f) return K;
        const float q = 4.0f * std::sqrt(d1 * d2) + eps;
        const float t3 = (float)std::log((double)(num / q + eps)) * 0.5f;
        const float bd = ms_clamp(t12 + t3, eps, 100.0f);
        const float e = (float)std::exp((double)(-bd));
        const float hd = std::sqrt(1.0f - e + eps);
        return 1.0f - hd;
    }

    /* Per-box (x, y, a, b, c, det) of n xywhr rows, in the order idx (NULL: as given). */
    static void ms_obb_prep(Py_ssize_t n, const float *xywhr, const int64_t *idx, float *p) {
        for (Py_ssize_t k = 0; k < n; k++) {
            const float *r = xywhr + 5 * (idx != NULL ? idx[k] : k);
            float *q = p + 6 * k;
            q[0] = r[0]; q[1] = r[1];
            ms_obb_cov(r, q + 2, q + 3, q + 4, q + 5);
        }
    }

    /* probiou matrix (n, m) of a (n, 5) against b (m, 5). Returns 0 or -1 (no memory). */
    static int ms_probiou(Py_ssize_t n, const float *a, Py_ssize_t m, const float *b, float *out) {
        float *pa = (float *)std::malloc((size_t)(6 * n + 1) * sizeof(float));
        float *pb = (float *)std::malloc((size_t)(6 * m + 1) * sizeof(float));
        if (pa == NULL || pb == NULL) { std::free(pa); std::free(pb); return -1; }
        ms_obb_prep(n, a, NULL, pa);
        ms_obb_prep(m, b, NULL, pb);
        for (Py_ssize_t i = 0; i < n; i++) {
            const float *p = pa + 6 * i;
            for (Py_ssize_t j = 0; j < m; j++) {
                const float *q = pb + 6 * j;
                out[i * m + j] = ms_obb_iou(p[0], p[1], p[2], p[3], p[4], p[5],
                                            q[0], q[1], q[2], q[3], q[4], q[5], 0, 0.0f);
            }
        }
        std::free(pa); std::free(pb);
        return 0;
    }

    /* TorchNMS.fast_nms with batch_probiou. xywhr (n, 5), scores (n,), off: per-box offset added
       to x and y in float32 (Ultralytics' class * max_wh), or NULL. keep: >= n slots.
       Returns the count or -1 (no memory). */
    static Py_ssize_t ms_nms_rotated(Py_ssize_t n, const float *xywhr, const float *scores, const float *off,
                                     float thr, int64_t *keep) {
        Py_ssize_t i, j, nk = 0;
        if (n <= 0) return 0;
        if (!(thr >= 0.0f)) return 0; /* negative: the zeroed lower triangle suppresses every box */
        ms_okv *kv = (ms_okv *)std::malloc((size_t)n * sizeof(ms_okv));
        int64_t *order = (int64_t *)std::malloc((size_t)n * sizeof(int64_t));
        float *rows = (float *)std::malloc((size_t)(5 * n) * sizeof(float));
        float *p = (float *)std::malloc((size_t)(6 * n) * sizeof(float));
        if (kv == NULL || order == NULL || rows == NULL || p == NULL) {
            std::free(kv); std::free(order); std::free(rows); std::free(p);
            return -1;
        }
        for (i = 0; i < n; i++) { kv[i].v = scores[i]; kv[i].i = i; }
        ms_obb_sort_desc(kv, n);
        for (i = 0; i < n; i++) order[i] = kv[i].i;
        std::memcpy(rows, xywhr, (size_t)(5 * n) * sizeof(float));
        if (off != NULL)
            for (i = 0; i < n; i++) { rows[5 * i] = rows[5 * i] + off[i]; rows[5 * i + 1] = rows[5 * i + 1] + off[i]; }
        ms_obb_prep(n, rows, order, p);
        const float K = 1.0f - std::sqrt(1.0f + MS_OBB_EPS);
        for (j = 0; j < n; j++) {
            const float *q = p + 6 * j;
            int sup = 0;
            for (i = 0; i < j; i++) {
                const float *r = p + 6 * i;
                const float iou = ms_obb_iou(r[0], r[1], r[2], r[3], r[4], r[5],
                                             q[0], q[1], q[2], q[3], q[4], q[5], 1, K);
                if (iou > thr) { sup = 1; break; }
            }
            if (!sup) keep[nk++] = order[j];
        }
        std::free(kv); std::free(order); std::free(rows); std::free(p);
        return nk;
    }
    """
    int ms_probiou(Py_ssize_t n, const float* a, Py_ssize_t m, const float* b, float* out) nogil
    Py_ssize_t ms_nms_rotated(Py_ssize_t n, const float* xywhr, const float* scores, const float* off,
                              float thr, int64_t* keep) nogil


def probiou(const float[:, ::1] a, const float[:, ::1] b, float[:, ::1] out):
    """``batch_probiou(a, b)`` into ``out`` (n, m) float32. Returns 0, or -1 when out of memory."""
    cdef Py_ssize_t n = a.shape[0], m = b.shape[0]
    cdef int r
    if a.shape[1] != 5 or b.shape[1] != 5 or out.shape[0] != n or out.shape[1] != m:
        raise ValueError("probiou: inconsistent shapes")
    if n == 0 or m == 0:
        return 0
    with nogil:
        r = ms_probiou(n, &a[0, 0], m, &b[0, 0], &out[0, 0])
    return r


def nms_rotated(const float[:, ::1] xywhr, const float[::1] scores, const float[::1] offsets,
                bint use_offsets, float thr, int64_t[::1] out):
    """Ultralytics' fast-NMS with probiou; with ``use_offsets`` each box's x and y are shifted by
    ``offsets`` first (float32). Writes kept indices to ``out`` (>= n slots, >= 1); returns the
    count, or -1 when out of memory."""
    cdef Py_ssize_t n = xywhr.shape[0], r
    if xywhr.shape[1] != 5 or scores.shape[0] != n or out.shape[0] < n or (use_offsets and offsets.shape[0] != n):
        raise ValueError("nms_rotated: inconsistent shapes")
    if n == 0:
        return 0
    with nogil:
        r = ms_nms_rotated(n, &xywhr[0, 0], &scores[0], &offsets[0] if use_offsets else NULL, thr, &out[0])
    return r
