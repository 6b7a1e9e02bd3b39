# distutils: language = c++
"""NMS and YOLO decode kernels with torchvision / Ultralytics semantics (C++ inside Cython).

* Order: one stable LSD radix sort of 32-bit keys that order float32 scores exactly like
  ``torch.sort(stable=True, descending=True)`` (every NaN first, ``-0.0 == 0.0``, ties by index).
  Where torch sorts *unstably* (``batched_nms`` above 1000 boxes orders the kept boxes with
  ``Tensor.sort(descending=True)``; ``non_max_suppression`` truncates to ``max_nms`` with
  ``argsort(descending=True)``), ties come out in the order of libstdc++'s ``std::sort`` with
  torch's comparator, which is what torch's CPU sort runs; this module calls the same ``std::sort``.
* Greedy NMS that compares each box only with the boxes already kept (only those of its own
  class when that provably cannot change the result), stops after ``max_keep`` boxes, and
  computes IoU with torchvision's CPU arithmetic: float32, ``std::max``/``std::min`` NaN
  behaviour, ``w, h`` clamped at 0, ``inter / (area_kept + area - inter)`` compared with the double
  threshold (as ``ovr > largest float <= thr``, which is equivalent). Kept boxes sit in
  contiguous per-class arrays so the comparison loop vectorizes.
* YOLO decode: a class-major running max over the score rows, tile by tile (512 anchors), then
  for candidates only the first argmax and NaN check down the (cache-hot) column, box conversion
  and Ultralytics' ``class * 7680`` float32 offset before NMS.

The wrappers in ``modelserve.ops`` validate everything; these functions trust their inputs, run
without the GIL and never raise (they return -1 when out of memory).
"""

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc

cnp.import_array()


cdef extern from *:
    """
    #include <algorithm>
    #include <cmath>
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define MS_SSE2 1
    #endif
    #include <cstdint>
    #include <cstdlib>
    #include <cstring>

    struct ms_kv { float v; int64_t i; };

    /* torch's CPU sort(stable=False, descending=True): std::sort with its KeyValueCompDesc. */
    static inline void ms_torch_sort_desc(ms_kv *a, Py_ssize_t n) {
        std::sort(a, a + n, [](const ms_kv &l, const ms_kv &r) {
            return (std::isnan(l.v) && !std::isnan(r.v)) || (l.v > r.v);
        });
    }

    /* Ascending order of keys == torch.sort(stable=True, descending=True) order of float32 scores:
       every NaN first, -0.0 == 0.0. */
    static inline uint32_t ms_desc_key(float s) {
        uint32_t u;
        if (s != s) return 0;
        if (s == 0) s = 0.0f;
        std::memcpy(&u, &s, 4);
        u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
        return ~u;
    }

    /* Stable ascending sort of (key, idx) by key, in place; tkey/tidx scratch of size n. */
    static void ms_sort(uint32_t *key, int32_t *idx, uint32_t *tkey, int32_t *tidx, Py_ssize_t n) {
        Py_ssize_t i, j, b, total, count[256];
        uint32_t *ka = key, *kb = tkey, *kt;
        int32_t *ia = idx, *ib = tidx, *it;
        int shift;
        if (n < 48) {
            for (i = 1; i < n; i++) {
                uint32_t k = key[i];
                int32_t v = idx[i];
                for (j = i - 1; j >= 0 && key[j] > k; j--) { key[j + 1] = key[j]; idx[j + 1] = idx[j]; }
                key[j + 1] = k;
                idx[j + 1] = v;
            }
            return;
        }
        for (shift = 0; shift < 32; shift += 8) {
            std::memset(count, 0, sizeof(count));
            for (i = 0; i < n; i++) count[(ka[i] >> shift) & 0xFF]++;
            if (count[(ka[0] >> shift) & 0xFF] == n) continue; /* nothing would move */
            for (total = 0, b = 0; b < 256; b++) { j = count[b]; count[b] = total; total += j; }
            for (i = 0; i < n; i++) {
                b = (ka[i] >> shift) & 0xFF;
                kb[count[b]] = ka[i];
                ib[count[b]] = ia[i];
                count[b]++;
            }
            kt = ka; ka = kb; kb = kt;
            it = ia; ia = ib; ib = it;
        }
        if (ka != key) {
            std::memcpy(key, ka, (size_t)n * sizeof(uint32_t));
            std::memcpy(idx, ia, (size_t)n * sizeof(int32_t));
        }
    }

    /* The largest float <= thr: for any float f, (double)f > thr  <=>  f > ms_thr_float(thr)
       (torchvision compares the float IoU with the double threshold). NaN stays NaN. */
    static inline float ms_thr_float(double thr) {
        float t = (float)thr;
        if ((double)t > thr) t = std::nextafter(t, -INFINITY);
        return t;
    }

    /* Does one of the m kept boxes suppress box j? torchvision's nms_kernel.cpp arithmetic, kept box
       first: std::max(a, b) == (a < b ? b : a), std::min(a, b) == (b < a ? b : a), float32 math. */
    static inline int ms_any_suppress(const float *kx1, const float *ky1, const float *kx2, const float *ky2,
                                      const float *ka, Py_ssize_t m, float jx1, float jy1, float jx2,
                                      float jy2, float ja, float T) {
        Py_ssize_t k = 0;
        while (k < m) {
            Py_ssize_t e = k + 32 < m ? k + 32 : m;
            int any = 0;
            for (; k < e; k++) {
                float xx1 = kx1[k] < jx1 ? jx1 : kx1[k];
                float yy1 = ky1[k] < jy1 ? jy1 : ky1[k];
                float xx2 = jx2 < kx2[k] ? jx2 : kx2[k];
                float yy2 = jy2 < ky2[k] ? jy2 : ky2[k];
                float dw = xx2 - xx1, dh = yy2 - yy1;
                float w = 0.0f < dw ? dw : 0.0f;
                float h = 0.0f < dh ? dh : 0.0f;
                float inter = w * h;
                float den = ka[k] + ja;
                den = den - inter;
                float ovr = inter / den;
                any |= ovr > T;
            }
            if (any) return 1;
        }
        return 0;
    }

    /* Greedy NMS over n boxes bx (x1, y1, x2, y2; already in visiting order). With cls, box i is
       compared only with kept boxes of class cls[i], stored in that class's region of the kept
       arrays: [start[c], start[c + 1]). Without, all kept boxes (one region). kb: 5 * n floats.
       Writes kept positions to keep; returns how many (<= max_keep). */
    static Py_ssize_t ms_nms(Py_ssize_t n, const float *bx, const int32_t *cls, const Py_ssize_t *start,
                             Py_ssize_t *kcount, Py_ssize_t ncls, double thr, Py_ssize_t max_keep,
                             int32_t *keep, float *kb) {
        const float T = ms_thr_float(thr);
        float *kx1 = kb, *ky1 = kb + n, *kx2 = kb + 2 * n, *ky2 = kb + 3 * n, *ka = kb + 4 * n;
        Py_ssize_t i, nk = 0, nall = 0, c;
        if (max_keep <= 0) return 0;
        if (cls != NULL) for (c = 0; c < ncls; c++) kcount[c] = 0;
        for (i = 0; i < n; i++) {
            const float x1 = bx[4 * i], y1 = bx[4 * i + 1], x2 = bx[4 * i + 2], y2 = bx[4 * i + 3];
            const float area = (x2 - x1) * (y2 - y1);
            Py_ssize_t base, m, p;
            if (cls != NULL) { c = cls[i]; base = start[c]; m = kcount[c]; }
            else { c = 0; base = 0; m = nall; }
            if (ms_any_suppress(kx1 + base, ky1 + base, kx2 + base, ky2 + base, ka + base, m, x1, y1, x2, y2, area, T))
                continue;
            p = base + m;
            kx1[p] = x1; ky1[p] = y1; kx2[p] = x2; ky2[p] = y2; ka[p] = area;
            if (cls != NULL) kcount[c] = m + 1; else nall = m + 1;
            keep[nk++] = (int32_t)i;
            if (nk >= max_keep) break;
        }
        return nk;
    }

    /* True when no box can suppress a box of another class: the classes' x extents (in dense class
       order) are disjoint or touching, no x is NaN, and thr >= 0 (a cross-class IoU is then 0, -0 or
       NaN, which never exceeds thr). lo/hi: ncls floats, seen: ncls bytes. */
    static int ms_classes_separated(Py_ssize_t n, const float *bx, const int32_t *cls, Py_ssize_t ncls,
                                    double thr, float *lo, float *hi, uint8_t *seen) {
        Py_ssize_t i, c;
        float prev_hi = 0;
        int have = 0;
        if (!(thr >= 0)) return thr != thr;
        std::memset(seen, 0, (size_t)ncls);
        for (i = 0; i < n; i++) {
            float a = bx[4 * i], b = bx[4 * i + 2];
            if (a != a || b != b) return 0;
            if (b < a) { float t = a; a = b; b = t; }
            c = cls[i];
            if (!seen[c]) { seen[c] = 1; lo[c] = a; hi[c] = b; }
            else { if (a < lo[c]) lo[c] = a; if (b > hi[c]) hi[c] = b; }
        }
        for (c = 0; c < ncls; c++) {
            if (!seen[c]) continue;
            if (have && !(prev_hi <= lo[c])) return 0;
            prev_hi = hi[c];
            have = 1;
        }
        return 1;
    }

    /* Per-class regions for ms_nms: start[c] = number of boxes of classes < c. */
    static void ms_regions(Py_ssize_t n, const int32_t *cls, Py_ssize_t ncls, Py_ssize_t *start) {
        Py_ssize_t i, c, total = 0, k;
        for (c = 0; c <= ncls; c++) start[c] = 0;
        for (i = 0; i < n; i++) start[cls[i]]++;
        for (c = 0; c < ncls; c++) { k = start[c]; start[c] = total; total += k; }
        start[ncls] = total;
    }

    /* torchvision's per-class path: kept indices in increasing order, reordered by
       scores[kept].sort(descending=True) (unstable). Returns m, or -1 when out of memory. */
    static Py_ssize_t ms_torch_order(Py_ssize_t n, Py_ssize_t nk, const float *scores, const int32_t *idx,
                                     const int32_t *keep, int64_t *out) {
        uint8_t *mask = (uint8_t *)std::malloc((size_t)n);
        ms_kv *kv = (ms_kv *)std::malloc((size_t)nk * sizeof(ms_kv) + 1);
        Py_ssize_t i, m = 0;
        if (mask == NULL || kv == NULL) { std::free(mask); std::free(kv); return -1; }
        std::memset(mask, 0, (size_t)n);
        for (i = 0; i < nk; i++) mask[idx[keep[i]]] = 1;
        for (i = 0; i < n; i++) if (mask[i]) { kv[m].v = scores[i]; kv[m].i = i; m++; }
        ms_torch_sort_desc(kv, m);
        for (i = 0; i < m; i++) out[i] = kv[i].i;
        std::free(mask);
        std::free(kv);
        return m;
    }

    /* NMS / batched NMS. dense: class per box in 0..ncls-1 (increasing with the class id). offsets
       NULL: one NMS per class on the raw boxes (torchvision's per-class path; unstable_order then
       orders the result like it); else boxes + offsets (coordinate trick) and one NMS, restricted to
       same-class comparisons only when that provably changes nothing. Returns count or -1. */
    static Py_ssize_t ms_batched(Py_ssize_t n, const float *boxes, const float *scores, const float *offsets,
                                 const int32_t *dense, Py_ssize_t ncls, double thr, Py_ssize_t max_keep,
                                 int64_t *out, int unstable_order) {
        Py_ssize_t i, nk = -1;
        uint32_t *key = (uint32_t *)std::malloc((size_t)(2 * n + 1) * sizeof(uint32_t));
        int32_t *idx = (int32_t *)std::malloc((size_t)(2 * n + 1) * sizeof(int32_t));
        float *bx = (float *)std::malloc((size_t)(9 * n + 2 * ncls + 1) * sizeof(float));
        int32_t *ints = (int32_t *)std::malloc((size_t)(2 * n + 1) * sizeof(int32_t));
        Py_ssize_t *reg = (Py_ssize_t *)std::malloc((size_t)(2 * ncls + 2) * sizeof(Py_ssize_t));
        uint8_t *seen = (uint8_t *)std::malloc((size_t)ncls + 1);
        int32_t *cls, *keep;
        int per_class = 1;
        if (key == NULL || idx == NULL || bx == NULL || ints == NULL || reg == NULL || seen == NULL) goto done;
        cls = ints;
        keep = ints + n;
        for (i = 0; i < n; i++) { key[i] = ms_desc_key(scores[i]); idx[i] = (int32_t)i; }
        ms_sort(key, idx, key + n, idx + n, n);
        for (i = 0; i < n; i++) {
            const Py_ssize_t o = idx[i];
            const float off = offsets != NULL ? offsets[o] : 0.0f;
            bx[4 * i] = boxes[4 * o] + off;
            bx[4 * i + 1] = boxes[4 * o + 1] + off;
            bx[4 * i + 2] = boxes[4 * o + 2] + off;
            bx[4 * i + 3] = boxes[4 * o + 3] + off;
            cls[i] = dense != NULL ? dense[o] : 0;
        }
        if (offsets != NULL)
            per_class = ms_classes_separated(n, bx, cls, ncls, thr, bx + 9 * n, bx + 9 * n + ncls, seen);
        if (per_class) ms_regions(n, cls, ncls, reg);
        nk = ms_nms(n, bx, per_class ? cls : NULL, reg, reg + ncls + 1, ncls, thr, max_keep, keep, bx + 4 * n);
        if (offsets == NULL && unstable_order && nk > 1) {
            nk = ms_torch_order(n, nk, scores, idx, keep, out);
        } else {
            for (i = 0; i < nk; i++) out[i] = idx[keep[i]];
        }
    done:
        std::free(key); std::free(idx); std::free(bx); std::free(ints); std::free(reg); std::free(seen);
        return nk;
    }

    /* Class-major pass over one tile of anchors [t0, t1): running max of the class scores
       (max == v > b ? v : b, so NaN never wins; NaN is caught by the column check of candidates). */
    static void ms_tile_max(const float *scores, Py_ssize_t nc, Py_ssize_t N, Py_ssize_t t0, Py_ssize_t t1,
                            float *best) {
        Py_ssize_t c, i, len = t1 - t0;
        const float *row = scores + t0;
        for (i = 0; i < len; i++) best[i] = row[i];
        c = 1;
    #ifdef MS_SSE2
        /* four rows per sweep. A NaN may hide a neighbour's value here, which only matters for a
           box with a NaN score, and the column check of candidates excludes those anyway; for
           NaN-free columns the maximum is exact. */
        for (; c + 4 <= nc; c += 4) {
            const float *r0 = scores + c * N + t0, *r1 = r0 + N, *r2 = r1 + N, *r3 = r2 + N;
            i = 0;
            for (; i + 4 <= len; i += 4) {
                const __m128 m01 = _mm_max_ps(_mm_loadu_ps(r0 + i), _mm_loadu_ps(r1 + i));
                const __m128 m23 = _mm_max_ps(_mm_loadu_ps(r2 + i), _mm_loadu_ps(r3 + i));
                _mm_storeu_ps(best + i, _mm_max_ps(_mm_max_ps(m01, m23), _mm_loadu_ps(best + i)));
            }
            for (; i < len; i++) {
                float b = best[i];
                b = r0[i] > b ? r0[i] : b;
                b = r1[i] > b ? r1[i] : b;
                b = r2[i] > b ? r2[i] : b;
                best[i] = r3[i] > b ? r3[i] : b;
            }
        }
    #endif
        for (; c < nc; c++) {
            row = scores + c * N + t0;
            for (i = 0; i < len; i++) { float v = row[i], b = best[i]; best[i] = v > b ? v : b; }
        }
    }

    /* Class-major first argmax, max and NaN flag over one tile (all 32-bit lanes: vectorizes).
       best ends as the first maximum ignoring NaN; nan is nonzero when any score was NaN. */
    static void ms_tile_arg(const float *scores, Py_ssize_t nc, Py_ssize_t N, Py_ssize_t t0, Py_ssize_t t1,
                            float *best, int32_t *arg, int32_t *nan) {
        Py_ssize_t c, i, len = t1 - t0;
        const float *row = scores + t0;
        for (i = 0; i < len; i++) { best[i] = row[i]; arg[i] = 0; nan[i] = row[i] != row[i]; }
        for (c = 1; c < nc; c++) {
            const int32_t cc = (int32_t)c;
            row = scores + c * N + t0;
            i = 0;
    #ifdef MS_SSE2
            {
                const __m128i vc = _mm_set1_epi32(cc);
                for (; i + 4 <= len; i += 4) {
                    const __m128 v = _mm_loadu_ps(row + i), b = _mm_loadu_ps(best + i);
                    const __m128i gt = _mm_castps_si128(_mm_cmpgt_ps(v, b));
                    const __m128i a = _mm_loadu_si128((const __m128i *)(arg + i));
                    const __m128i nn = _mm_loadu_si128((const __m128i *)(nan + i));
                    _mm_storeu_ps(best + i, _mm_max_ps(v, b));
                    _mm_storeu_si128((__m128i *)(arg + i), _mm_or_si128(_mm_and_si128(gt, vc), _mm_andnot_si128(gt, a)));
                    _mm_storeu_si128((__m128i *)(nan + i), _mm_or_si128(nn, _mm_castps_si128(_mm_cmpunord_ps(v, v))));
                }
            }
    #endif
            for (; i < len; i++) {
                const float v = row[i], b = best[i];
                const int gt = v > b;
                best[i] = gt ? v : b;
                arg[i] = gt ? cc : arg[i];
                nan[i] |= v != v;
            }
        }
    }

    /* One image of Ultralytics' non_max_suppression (single label). raw: (4 + nc, N) row-major.
       det: up to max_det rows of (x1, y1, x2, y2, conf, class). Returns rows, or -1 (no memory). */
    /* Anchor a's box as x1, y1, x2, y2: Ultralytics' xywh2xyxy in float32 (cx - w / 2, ...), or the
       first four channels as they are when the caller already converted them (xyxy != 0). */
    static inline void ms_anchor_box(const float *raw, Py_ssize_t N, Py_ssize_t a, int xyxy, float *b) {
        if (xyxy) {
            b[0] = raw[a]; b[1] = raw[N + a]; b[2] = raw[2 * N + a]; b[3] = raw[3 * N + a];
        } else {
            const float hw = raw[2 * N + a] / 2.0f, hh = raw[3 * N + a] / 2.0f;
            b[0] = raw[a] - hw; b[1] = raw[N + a] - hh; b[2] = raw[a] + hw; b[3] = raw[N + a] + hh;
        }
    }

    static Py_ssize_t ms_yolo_one(const float *raw, Py_ssize_t nc, Py_ssize_t N, float conf, double thr,
                                  Py_ssize_t max_det, const uint8_t *allowed, int agnostic, Py_ssize_t max_nms,
                                  float max_wh, int xyxy, float *det, int64_t *anchors) {
        const Py_ssize_t TILE = 512;
        const float *scores = raw + 4 * N;
        Py_ssize_t t0, i, c, n = 0, nk = -1;
        float tile_best[512];
        int32_t tile_arg[512], tile_nan[512];
        float *sc = NULL, *bx = NULL;
        uint32_t *key = NULL;
        int32_t *idx = NULL, *arg = NULL, *cls = NULL, *keep = NULL;
        Py_ssize_t *reg = NULL;
        uint8_t *seen = NULL;
        int per_class = 0;

        key = (uint32_t *)std::malloc((size_t)(2 * N + 1) * sizeof(uint32_t));
        idx = (int32_t *)std::malloc((size_t)(2 * N + 1) * sizeof(int32_t));
        arg = (int32_t *)std::malloc((size_t)(N + 1) * sizeof(int32_t));
        sc = (float *)std::malloc((size_t)(N + 1) * sizeof(float));
        if (key == NULL || idx == NULL || arg == NULL || sc == NULL) goto done;

        for (t0 = 0; t0 < N; t0 += TILE) {
            const Py_ssize_t t1 = t0 + TILE < N ? t0 + TILE : N;
            Py_ssize_t ncand = 0;
            ms_tile_max(scores, nc, N, t0, t1, tile_best);
            for (i = t0; i < t1; i++) ncand += tile_best[i - t0] > conf;
            if (ncand == 0) continue;
            if (ncand * 8 > t1 - t0) { /* many candidates: argmax + NaN flags class-major too */
                ms_tile_arg(scores, nc, N, t0, t1, tile_best, tile_arg, tile_nan);
                for (i = t0; i < t1; i++) {
                    const int32_t j = tile_arg[i - t0];
                    if (!(tile_best[i - t0] > conf) || tile_nan[i - t0] || !allowed[j]) continue;
                    key[n] = ms_desc_key(tile_best[i - t0]);
                    idx[n] = (int32_t)i;
                    arg[i] = j;
                    sc[i] = tile_best[i - t0];
                    n++;
                }
                continue;
            }
            for (i = t0; i < t1; i++) {
                float m;
                int32_t j = 0;
                int nan = 0;
                if (!(tile_best[i - t0] > conf)) continue;
                /* candidate: first argmax and NaN check down its column (hot in cache) */
                m = scores[i];
                nan = m != m;
                for (c = 1; c < nc; c++) {
                    const float v = scores[c * N + i];
                    if (v > m) { m = v; j = (int32_t)c; }
                    nan |= v != v;
                }
                if (nan || !allowed[j]) continue;
                key[n] = ms_desc_key(m);
                idx[n] = (int32_t)i;
                arg[i] = j;
                sc[i] = m;
                n++;
            }
        }
        if (n == 0 || max_det <= 0) { nk = 0; goto done; }
        if (n > max_nms) { /* Ultralytics: x[:, 4].argsort(descending=True)[:max_nms] (unstable) */
            ms_kv *kv = (ms_kv *)std::malloc((size_t)n * sizeof(ms_kv));
            if (kv == NULL) goto done;
            for (i = 0; i < n; i++) { kv[i].v = sc[idx[i]]; kv[i].i = idx[i]; }
            ms_torch_sort_desc(kv, n);
            for (i = 0; i < n; i++) idx[i] = (int32_t)kv[i].i;
            std::free(kv);
            n = max_nms;
        } else {
            ms_sort(key, idx, key + n, idx + n, n);
        }
        bx = (float *)std::malloc((size_t)(9 * n + 2 * nc + 1) * sizeof(float));
        cls = (int32_t *)std::malloc((size_t)(2 * n + 1) * sizeof(int32_t));
        reg = (Py_ssize_t *)std::malloc((size_t)(2 * nc + 2) * sizeof(Py_ssize_t));
        seen = (uint8_t *)std::malloc((size_t)nc + 1);
        if (bx == NULL || cls == NULL || reg == NULL || seen == NULL) goto done;
        keep = cls + n;
        for (i = 0; i < n; i++) {
            const Py_ssize_t a = idx[i];
            const int32_t j = arg[a];
            const float off = agnostic ? 0.0f : (float)j * max_wh;
            ms_anchor_box(raw, N, a, xyxy, bx + 4 * i);
            bx[4 * i] += off;
            bx[4 * i + 1] += off;
            bx[4 * i + 2] += off;
            bx[4 * i + 3] += off;
            cls[i] = j;
        }
        if (!agnostic) per_class = ms_classes_separated(n, bx, cls, nc, thr, bx + 9 * n, bx + 9 * n + nc, seen);
        if (per_class) ms_regions(n, cls, nc, reg);
        nk = ms_nms(n, bx, per_class ? cls : NULL, reg, reg + nc + 1, nc, thr, max_det, keep, bx + 4 * n);
        for (i = 0; i < nk; i++) {
            const Py_ssize_t a = idx[keep[i]];
            ms_anchor_box(raw, N, a, xyxy, det + 6 * i);
            det[6 * i + 4] = sc[a];
            det[6 * i + 5] = (float)arg[a];
            if (anchors != NULL) anchors[i] = (int64_t)a;
        }
    done:
        std::free(key); std::free(idx); std::free(arg); std::free(sc);
        std::free(bx); std::free(cls); std::free(reg); std::free(seen);
        return nk;
    }

    /* Map n rows [x1, y1, x2, y2, ...] (stride 6) from tensor to image pixels in place, exactly as
       modelserve.ops.scale_boxes does in float32: (v - pad) / gain, then max(v, 0), min(v, bound)
       with NumPy's NaN and signed-zero behaviour. s: pad[4], gain[4], bound[4]. */
    static void ms_scale_rows(float *det, Py_ssize_t n, const float *s) {
        Py_ssize_t i;
        int j;
        for (i = 0; i < n; i++)
            for (j = 0; j < 4; j++) {
                float v = (det[6 * i + j] - s[j]) / s[4 + j];
                v = v < 0.0f ? 0.0f : v;
                det[6 * i + j] = v > s[8 + j] ? s[8 + j] : v;
            }
    }
    """
    Py_ssize_t ms_batched(Py_ssize_t n, const float* boxes, const float* scores, const float* offsets,
                          const int32_t* dense, Py_ssize_t ncls, double thr, Py_ssize_t max_keep,
                          int64_t* out, int unstable_order) nogil
    Py_ssize_t ms_yolo_one(const float* raw, Py_ssize_t nc, Py_ssize_t N, float conf, double thr,
                           Py_ssize_t max_det, const uint8_t* allowed, int agnostic, Py_ssize_t max_nms,
                           float max_wh, int xyxy, float* det, int64_t* anchors) nogil
    void ms_scale_rows(float* det, Py_ssize_t n, const float* s) nogil
    struct ms_kv:
        float v
        int64_t i
    void ms_torch_sort_desc(ms_kv *a, Py_ssize_t n) nogil


def nms_plus_one(const float[:, ::1] boxes, const int64_t[::1] order, double thr, int64_t[::1] keep):
    """YOLOX's NMS (its ``demo_utils.nms``): boxes visited in ``order``, areas and overlaps with the
    +1-pixel convention, a box kept while its IoU with every kept box is ``<= thr``; float32 steps
    in the reference's order. Writes kept indices into ``keep`` (size >= len(order)); returns the
    count, or -1 when out of memory."""
    cdef Py_ssize_t n = order.shape[0], a, b, count = 0
    cdef int64_t i, j
    cdef float t = <float>thr, w, h, inter, one = 1.0, zero = 0.0
    cdef float *area
    cdef uint8_t *gone
    if n == 0:
        return 0
    area = <float *>malloc(boxes.shape[0] * sizeof(float) + 1)
    gone = <uint8_t *>malloc(n + 1)
    if area == NULL or gone == NULL:
        free(area)
        free(gone)
        return -1
    with nogil:
        for a in range(boxes.shape[0]):
            area[a] = (boxes[a, 2] - boxes[a, 0] + one) * (boxes[a, 3] - boxes[a, 1] + one)
        for a in range(n):
            gone[a] = 0
        for a in range(n):
            if gone[a]:
                continue
            i = order[a]
            keep[count] = i
            count += 1
            for b in range(a + 1, n):
                if gone[b]:
                    continue
                j = order[b]
                w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + one
                h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + one
                w = max(zero, w)
                h = max(zero, h)
                inter = w * h
                if not (inter / (area[i] + area[j] - inter) <= t):
                    gone[b] = 1
    free(area)
    free(gone)
    return count


def torch_sort_order(const float[::1] scores, int64_t[::1] out):
    """torch's CPU ``argsort(descending=True)`` (``stable=False``: libstdc++'s ``std::sort`` with
    torch's comparator, ties as it leaves them) of ``scores`` into ``out`` (same size); returns 0,
    or -1 when out of memory."""
    cdef Py_ssize_t n = scores.shape[0], j
    cdef ms_kv *kv
    if n == 0:
        return 0
    kv = <ms_kv *>malloc(n * sizeof(ms_kv))
    if kv == NULL:
        return -1
    with nogil:
        for j in range(n):
            kv[j].v = scores[j]
            kv[j].i = j
        ms_torch_sort_desc(kv, n)
        for j in range(n):
            out[j] = kv[j].i
    free(kv)
    return 0


def nms(const float[:, ::1] boxes, const float[::1] scores, double thr, Py_ssize_t max_keep,
        int64_t[::1] out):
    """Plain NMS; writes kept indices into ``out`` (size >= min(n, max_keep), >= 1); returns the
    count, or -1 when out of memory."""
    cdef Py_ssize_t n = boxes.shape[0], r
    if n == 0:
        return 0
    with nogil:
        r = ms_batched(n, &boxes[0, 0], &scores[0], NULL, NULL, 1, thr, max_keep, &out[0], 0)
    return r


def batched_nms(const float[:, ::1] boxes, const float[::1] scores, const float[::1] offsets,
                const int32_t[::1] dense, Py_ssize_t ncls, bint use_offsets, double thr,
                Py_ssize_t max_keep, int64_t[::1] out):
    """Class-aware NMS; ``dense`` are the class ids mapped to 0..ncls-1 in increasing id order;
    with ``use_offsets`` the boxes are shifted by ``offsets`` (torchvision's coordinate trick),
    else one NMS per class runs on the raw boxes and the result is ordered like torchvision's
    per-class path. Returns the count, or -1 when out of memory."""
    cdef Py_ssize_t n = boxes.shape[0], r
    if n == 0:
        return 0
    with nogil:
        r = ms_batched(n, &boxes[0, 0], &scores[0], &offsets[0] if use_offsets else NULL,
                       &dense[0], ncls, thr, max_keep, &out[0], not use_offsets)
    return r


def yolo_postprocess(const float[:, :, ::1] raw, double conf, double thr, Py_ssize_t max_det,
                     const uint8_t[::1] allowed, bint agnostic, Py_ssize_t max_nms, float max_wh,
                     float[:, :, ::1] det, int64_t[::1] counts, Py_ssize_t nc=-1, int64_t[:, ::1] anchors=None,
                     bint xyxy=False):
    """Decode + NMS for each image of ``raw`` (B, 4+nc+extra, N) on its first ``4 + nc`` channels
    (``nc=-1``: all of them, extra = 0) into ``det`` (B, >= min(max_det, N), 6); ``counts[b]``
    receives the number of rows and, when given, ``anchors`` (B, same rows) the kept anchors
    (columns of ``raw``), so that the caller can gather channels after the class scores
    (segmentation coefficients, keypoints). ``conf`` is compared in float32 (as torch does).
    ``xyxy``: the first four channels are already x1, y1, x2, y2 (not cx, cy, w, h).
    Returns 0, or -1 when out of memory."""
    cdef Py_ssize_t B = raw.shape[0], C = raw.shape[1], N = raw.shape[2], bi, r
    cdef float fconf = <float>conf
    cdef int rc = 0
    cdef bint want = anchors is not None
    if nc < 0:
        nc = C - 4
    if nc < 1 or C < 4 + nc or allowed.shape[0] < nc or det.shape[0] < B or counts.shape[0] < B \
            or det.shape[2] != 6 or det.shape[1] < max(1, min(max_det, N)) \
            or (want and (anchors.shape[0] < B or anchors.shape[1] < det.shape[1])):
        raise ValueError("yolo_postprocess: inconsistent shapes")
    for bi in range(B):
        counts[bi] = 0
    if N == 0:
        return 0
    with nogil:
        for bi in range(B):
            r = ms_yolo_one(&raw[bi, 0, 0], nc, N, fconf, thr, max_det, &allowed[0], agnostic,
                            max_nms, max_wh, xyxy, &det[bi, 0, 0], &anchors[bi, 0] if want else NULL)
            if r < 0:
                rc = -1
                break
            counts[bi] = r
    return rc


def yolo_detections(const float[:, :, ::1] raw, double conf, double thr, Py_ssize_t max_det,
                    const uint8_t[::1] allowed, bint agnostic, Py_ssize_t max_nms, float max_wh,
                    const float[:, ::1] scale, bint xyxy=False):
    """``yolo_postprocess`` straight into the arrays :class:`modelserve.Detections` holds: one
    ``(xyxy (n, 4) float32, confidence (n,) float32, class_id (n,) int64)`` tuple per image (the
    Predictor's path: no intermediate ``(n, 6)`` arrays). ``scale``: (0, 12), or (B, 12) rows that
    map each image's boxes back to its source pixels; ``xyxy`` as for ``yolo_postprocess``. Raises
    MemoryError when out of memory."""
    cdef Py_ssize_t B = raw.shape[0], C = raw.shape[1], N = raw.shape[2], nc = C - 4, bi, i, n, r = 0
    cdef Py_ssize_t rows = max(1, min(max_det, N))
    cdef float fconf = <float>conf
    cdef float* det
    cdef float* src
    cdef float* xy
    cdef float* cf
    cdef int64_t* cl
    cdef Py_ssize_t* counts
    cdef cnp.npy_intp dims[2]
    cdef int rc = 0
    if nc < 0 or allowed.shape[0] < nc or scale.shape[1] != 12 or scale.shape[0] not in (0, B):
        raise ValueError("yolo_detections: inconsistent raw, allowed or scale shapes")
    det = <float*>malloc(<size_t>(B * rows * 6) * sizeof(float) + 1)
    counts = <Py_ssize_t*>malloc(<size_t>B * sizeof(Py_ssize_t) + 1)
    try:
        if det == NULL or counts == NULL:
            raise MemoryError("yolo_detections: out of memory")
        with nogil:
            for bi in range(B):
                counts[bi] = 0
                if N == 0:
                    continue
                r = ms_yolo_one(&raw[bi, 0, 0], nc, N, fconf, thr, max_det, &allowed[0], agnostic,
                                max_nms, max_wh, xyxy, det + bi * rows * 6, NULL)
                if r < 0:
                    rc = -1
                    break
                counts[bi] = r
                if scale.shape[0] > 0:
                    ms_scale_rows(det + bi * rows * 6, r, &scale[bi, 0])
        if rc != 0:
            raise MemoryError("yolo_detections: out of memory")
        out = []
        for bi in range(B):
            n = counts[bi]
            dims[0] = n
            dims[1] = 4
            boxes = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
            confidence = cnp.PyArray_EMPTY(1, dims, cnp.NPY_FLOAT32, 0)
            class_id = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
            xy = <float*>cnp.PyArray_DATA(boxes)
            cf = <float*>cnp.PyArray_DATA(confidence)
            cl = <int64_t*>cnp.PyArray_DATA(class_id)
            src = det + bi * rows * 6
            for i in range(n):
                xy[4 * i] = src[6 * i]
                xy[4 * i + 1] = src[6 * i + 1]
                xy[4 * i + 2] = src[6 * i + 2]
                xy[4 * i + 3] = src[6 * i + 3]
                cf[i] = src[6 * i + 4]
                cl[i] = <int64_t>src[6 * i + 5]
            out.append((boxes, confidence, class_id))
        return out
    finally:
        free(det)
        free(counts)

