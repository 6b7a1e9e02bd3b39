"""Outer contours of a binary mask, exactly as OpenCV's
``cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)`` finds them (OpenCV 4.9+
``contours_new.cpp``; written from the algorithm, not copied).

Suzuki & Abe's border following (1985), outer borders only:

* The mask is copied into a buffer padded by one zero pixel on every side, nonzero -> 1, so
  masks that touch the image border are traced like any other (only the bounding box of the
  nonzero pixels is copied: a mask that is zero around a box has the box's contours, shifted).
* Raster scan of the padded rows ``1..h`` and columns ``1..w``, looking only at the columns where
  the value changes. ``last`` is the last column of the row where the scan stepped onto an
  already-traced pixel (or the pixel before a change from a "visited" pixel to 0), column 0 at
  the start of a row. A ``0 -> 1`` change at column ``x`` starts an outer border unless the
  pixel at ``last`` reads ``> 0`` as a signed char (marked "visited", not "right": we are inside
  a traced blob, in one of its holes); RETR_EXTERNAL never follows hole borders. After a trace
  the scan resumes at the next column, reading the marks the trace left.
* Following a border from ``i0``: chain codes ``0..7`` are E, NE, N, NW, W, SW, S, SE (y grows
  downwards). The first neighbour ``i1`` is searched clockwise from NW (codes 3, 2, 1, 0, 7, 6,
  5, then 4); none means a single-pixel blob. Then, at each pixel ``i3`` entered from direction
  ``s`` (pointing back at the previous pixel), the next nonzero neighbour is searched
  counterclockwise from ``s + 1``. A pixel whose east neighbour was examined (the search passed
  code 8 = 0 and found nothing there) is marked "right" (``0x82``), any other unmarked pixel
  "visited" (``2``). Following stops on the step ``i1 -> i0``.
* CHAIN_APPROX_SIMPLE: a pixel is emitted when the direction leaving it differs from the one
  entering it (the start pixel's entering direction is the last step, ``i1 -> i0``), so straight
  runs (horizontal, vertical and diagonal) keep only their end points.

OpenCV puts each new contour first in its list: :func:`external_contours` here returns them in
discovery order and the Python wrapper reverses it.

``min_index`` is Ultralytics' ``data.converter.min_index`` (the first pair, in row-major order,
with the smallest squared distance; the squares wrap in int32 as NumPy's do, the sum is int64).

The wrappers in ``modelserve._contours`` validate everything; these functions run without the GIL
and never read or write outside their buffers (every traced pixel is inside the padding).
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t
from libc.string cimport memcpy

cnp.import_array()


cdef extern from *:
    """
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    typedef struct {
        int32_t *pts;      /* x, y pairs */
        Py_ssize_t npts, cap;
        int64_t *starts;   /* first point of each contour, plus the total at the end */
        Py_ssize_t nc, ccap;
    } ms_cbuf;

    static const int ms_cdx[8] = {1, 1, 0, -1, -1, -1, 0, 1};
    static const int ms_cdy[8] = {0, -1, -1, -1, 0, 1, 1, 1};

    #define MS_VISITED 0x02
    #define MS_RIGHT 0x82
    #define MS_FLAGS 0xFE

    static void ms_cbuf_free(ms_cbuf *b) {
        free(b->pts); free(b->starts);
        b->pts = NULL; b->starts = NULL;
    }

    static int ms_push_pt(ms_cbuf *b, int32_t x, int32_t y) {
        if (b->npts == b->cap) {
            Py_ssize_t cap = b->cap ? 2 * b->cap : 1024;
            int32_t *p = (int32_t *)realloc(b->pts, (size_t)cap * 2 * sizeof(int32_t));
            if (p == NULL) return -1;
            b->pts = p; b->cap = cap;
        }
        b->pts[2 * b->npts] = x;
        b->pts[2 * b->npts + 1] = y;
        b->npts++;
        return 0;
    }

    static int ms_push_start(ms_cbuf *b) {
        if (b->nc + 1 >= b->ccap) {
            Py_ssize_t cap = b->ccap ? 2 * b->ccap : 64;
            int64_t *p = (int64_t *)realloc(b->starts, (size_t)cap * sizeof(int64_t));
            if (p == NULL) return -1;
            b->starts = p; b->ccap = cap;
        }
        b->starts[b->nc++] = (int64_t)b->npts;
        return 0;
    }

    /* Follow the outer border that starts at padded index i0 = (x, y) of the padded image;
       (x, y) are the original-image coordinates of i0. d: the 16 flat deltas (code & 7). */
    static int ms_trace_outer(unsigned char *img, const Py_ssize_t *d, Py_ssize_t i0,
                              int32_t x, int32_t y, ms_cbuf *out) {
        int s = 4, s_end, prev_s;
        Py_ssize_t i1, i3, i4 = i0;
        do {
            s = (s - 1) & 7;
            i1 = i0 + d[s];
        } while (img[i1] == 0 && s != 4);
        if (s == 4) {  /* a single pixel */
            img[i0] = MS_RIGHT;
            return ms_push_pt(out, x, y);
        }
        i3 = i0;
        prev_s = s ^ 4;
        for (;;) {
            s_end = s;
            while (s < 15) {
                ++s;
                i4 = i3 + d[s];
                if (img[i4] != 0) break;
            }
            s &= 7;
            if ((unsigned)(s - 1) < (unsigned)s_end) img[i3] = MS_RIGHT;
            else if (img[i3] == 1) img[i3] = MS_VISITED;
            if (s != prev_s && ms_push_pt(out, x, y) != 0) return -1;
            prev_s = s;
            x += ms_cdx[s];
            y += ms_cdy[s];
            if (i4 == i0 && i3 == i1) break;
            i3 = i4;
            s = (s + 4) & 7;
        }
        return 0;
    }

    /* First column >= x of the padded row r whose byte differs from v (width if none). */
    static inline Py_ssize_t ms_next_change(const unsigned char *r, Py_ssize_t x, Py_ssize_t width,
                                            unsigned char v) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        const uint64_t pat = (uint64_t)v * 0x0101010101010101ULL;
        while (x + 8 <= width) {
            uint64_t word;
            memcpy(&word, r + x, 8);
            word ^= pat;
            if (word) return x + (__builtin_ctzll(word) >> 3);
            x += 8;
        }
    #endif
        while (x < width && r[x] == v) x++;
        return x;
    }

    /* Last column in lo..hi-1 of the contiguous row r holding a nonzero byte (lo - 1 if none). */
    static inline Py_ssize_t ms_last_nonzero(const unsigned char *r, Py_ssize_t lo, Py_ssize_t hi) {
    #if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        while (hi - 8 >= lo) {
            uint64_t word;
            memcpy(&word, r + hi - 8, 8);
            if (word) return hi - 8 + ((63 - __builtin_clzll(word)) >> 3);
            hi -= 8;
        }
    #endif
        while (hi > lo && r[hi - 1] == 0) hi--;
        return hi - 1;
    }

    static int ms_row_any(const unsigned char *p, Py_ssize_t w, Py_ssize_t sx) {
        Py_ssize_t x = 0;
        if (sx == 1) {
            for (; x + 64 <= w; x += 64) {
                uint64_t acc = 0, word;
                int k;
                for (k = 0; k < 64; k += 8) { memcpy(&word, p + x + k, 8); acc |= word; }
                if (acc) return 1;
            }
            for (; x < w; x++) if (p[x]) return 1;
            return 0;
        }
        for (; x < w; x++) if (p[x * sx]) return 1;
        return 0;
    }

    /* The outer contours of an h x w mask (any strides, in bytes; nonzero = foreground), in
       discovery order, into out. Only the bounding box of the nonzero pixels is copied (padded
       by one zero pixel) and scanned: its contours are the mask's, translated. Returns 0, or -1
       when out of memory (out is then freed). */
    static int ms_external_contours(const unsigned char *src, Py_ssize_t h, Py_ssize_t w,
                                    Py_ssize_t sy, Py_ssize_t sx, ms_cbuf *out) {
        Py_ssize_t r0 = -1, r1 = -1, c0 = w, c1 = -1, bh, bw, step, width;
        Py_ssize_t d[16], y, x, row, last;
        unsigned char *img, prev, p;
        int k;
        memset(out, 0, sizeof(*out));
        for (y = 0; y < h; y++) {  /* bounding box */
            const unsigned char *s = src + y * sy;
            if (!ms_row_any(s, w, sx)) continue;
            if (r0 < 0) r0 = y;
            r1 = y;
            if (sx == 1) {
                x = ms_next_change(s, 0, c0, 0);
                if (x < c0) c0 = x;
                x = ms_last_nonzero(s, c1 + 1, w);
                if (x > c1) c1 = x;
            } else {
                for (x = 0; x < c0; x++) if (s[x * sx]) { c0 = x; break; }
                for (x = w - 1; x > c1; x--) if (s[x * sx]) { c1 = x; break; }
            }
        }
        if (r0 >= 0) {
            bh = r1 - r0 + 1; bw = c1 - c0 + 1; step = bw + 2; width = bw + 1;
            if ((size_t)step > ((size_t)-1) / (size_t)(bh + 2)) return -1;
            img = (unsigned char *)calloc((size_t)(bh + 2) * (size_t)step, 1);
            if (img == NULL) return -1;
            for (y = 0; y < bh; y++) {
                const unsigned char *s = src + (y + r0) * sy + c0 * sx;
                unsigned char *t = img + (y + 1) * step + 1;
                if (sx == 1) for (x = 0; x < bw; x++) t[x] = s[x] != 0;
                else for (x = 0; x < bw; x++) t[x] = s[x * sx] != 0;
            }
            for (k = 0; k < 16; k++) d[k] = ms_cdx[k & 7] + ms_cdy[k & 7] * step;
            for (y = 1; y <= bh; y++) {
                row = y * step;
                x = 1;
                prev = 0;
                last = 0;
                for (;;) {
                    x = ms_next_change(img + row, x, width, prev);
                    if (x >= width) break;
                    p = img[row + x];
                    if (prev == 0 && p == 1) {
                        if (!((signed char)img[row + last] > 0)) {  /* not inside a traced blob */
                            if (ms_push_start(out) != 0 ||
                                ms_trace_outer(img, d, row + x, (int32_t)(x - 1 + c0), (int32_t)(y - 1 + r0),
                                               out) != 0) {
                                free(img); ms_cbuf_free(out);
                                return -1;
                            }
                            last = x;
                            x++;
                            prev = img[row + x - 1];
                            continue;
                        }
                    } else if (p == 0 && (signed char)prev >= 1 && (prev & MS_FLAGS)) {
                        last = x - 1;  /* a hole begins: RETR_EXTERNAL does not follow it */
                    }
                    prev = p;
                    if (p & MS_FLAGS) last = x;
                    x++;
                }
            }
            free(img);
        }
        if (ms_push_start(out) != 0) { ms_cbuf_free(out); return -1; }
        out->nc--;  /* the closing total is not a contour */
        return 0;
    }

    static inline int64_t ms_sq32(int64_t v) {
        /* v * v in int32, wrapping like NumPy's int32 arithmetic */
        return (int64_t)(int32_t)(uint32_t)((uint64_t)v * (uint64_t)v);
    }

    /* First (i, j) in row-major order minimising wrap32(dx^2) + wrap32(dy^2) (int64 sum). */
    static void ms_min_index(const int32_t *a, Py_ssize_t n, const int32_t *b, Py_ssize_t m,
                             Py_ssize_t *bi, Py_ssize_t *bj) {
        Py_ssize_t i, j;
        int64_t best = 0, v;
        int have = 0;
        *bi = 0; *bj = 0;
        for (i = 0; i < n; i++) {
            const int32_t ax = a[2 * i], ay = a[2 * i + 1];
            for (j = 0; j < m; j++) {
                const int32_t dx = (int32_t)((uint32_t)ax - (uint32_t)b[2 * j]);
                const int32_t dy = (int32_t)((uint32_t)ay - (uint32_t)b[2 * j + 1]);
                v = ms_sq32(dx) + ms_sq32(dy);
                if (!have || v < best) { best = v; *bi = i; *bj = j; have = 1; }
            }
        }
    }
    """
    ctypedef struct ms_cbuf:
        int32_t *pts
        Py_ssize_t npts
        int64_t *starts
        Py_ssize_t nc
    int ms_external_contours(const unsigned char *src, Py_ssize_t h, Py_ssize_t w,
                             Py_ssize_t sy, Py_ssize_t sx, ms_cbuf *out) nogil
    void ms_cbuf_free(ms_cbuf *b) nogil
    void ms_min_index(const int32_t *a, Py_ssize_t n, const int32_t *b, Py_ssize_t m,
                      Py_ssize_t *bi, Py_ssize_t *bj) nogil


def external_contours(const unsigned char[:, :] mask):
    """The outer contours of ``mask`` (nonzero = foreground, any strides) in discovery order:
    ``(points, starts)``, ``points`` ``(N, 2)`` int32 x, y, contour ``k`` being
    ``points[starts[k]:starts[k + 1]]`` (``starts`` int64, one more entry than contours).
    Returns None when out of memory."""
    cdef Py_ssize_t h = mask.shape[0], w = mask.shape[1]
    cdef ms_cbuf buf
    cdef int rc
    cdef cnp.ndarray pts, starts
    if h == 0 or w == 0:
        return np.zeros((0, 2), np.int32), np.zeros(1, np.int64)
    with nogil:
        rc = ms_external_contours(&mask[0, 0], h, w, mask.strides[0], mask.strides[1], &buf)
    if rc != 0:
        return None
    try:
        pts = np.empty((buf.npts, 2), np.int32)
        starts = np.empty(buf.nc + 1, np.int64)
        if buf.npts:
            memcpy(cnp.PyArray_DATA(pts), buf.pts, <size_t>buf.npts * 2 * sizeof(int32_t))
        memcpy(cnp.PyArray_DATA(starts), buf.starts, <size_t>(buf.nc + 1) * sizeof(int64_t))
    finally:
        ms_cbuf_free(&buf)
    return pts, starts


def min_index(const int32_t[:, ::1] a, const int32_t[:, ::1] b):
    """Ultralytics' ``min_index(a, b)`` of ``(n, 2)`` and ``(m, 2)`` int32 points (n, m >= 1):
    the first ``(i, j)`` in row-major order with the smallest squared distance."""
    cdef Py_ssize_t i = 0, j = 0
    if a.shape[0] == 0 or b.shape[0] == 0 or a.shape[1] != 2 or b.shape[1] != 2:
        raise ValueError("min_index: inconsistent shapes")
    with nogil:
        ms_min_index(&a[0, 0], a.shape[0], &b[0, 0], b.shape[0], &i, &j)
    return int(i), int(j)
