"""Segmentation mask assembly kernel: Ultralytics' ``process_mask_native`` (retina masks), per box.

For each detection, only its box crop is computed, from only the prototype pixels it needs:

1. logits ``coeffs[i] @ protos`` on the prototype rectangle the crop needs (double accumulation,
   channel after channel, rounded to float32);
2. when ``f > 1``, torch's bilinear upsample (``scale_factor=f``) of that rectangle onto the
   rectangle of the upsampled grid the crop needs;
3. unless ``direct``, torch's bilinear resize (``align_corners=False``) of the padding-cropped
   upsampled grid onto the crop;
4. ``> 0`` into the crop's bytes.

Both bilinear steps are separable passes that round exactly as torch's CPU kernel: a width pass
``x0 * l0w + x1 * l1w`` per needed source row, then ``t0 * l0h + t1 * l1h`` (float32, no FMA:
setup.py compiles with ``-ffp-contract=off``). The tap tables (indices and weights for every
output row/column of each step, already offset into the upsampled grid) come from
``modelserve._masks``; everything is validated there. ``assemble`` runs without the GIL and never
raises: it returns -1 when it cannot allocate its scratch buffers.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t
from libc.stdlib cimport free, malloc


cdef inline void _hpass(const float *src, Py_ssize_t src_stride, Py_ssize_t nrows,
                        const int32_t *i0, const int32_t *i1, const float *w0, const float *w1,
                        Py_ssize_t ncols, int32_t base, float *dst) noexcept nogil:
    """Width pass: ``dst[r, k] = src[r, i0[k] - base] * w0[k] + src[r, i1[k] - base] * w1[k]``."""
    cdef Py_ssize_t r, k
    cdef const float *s
    cdef float *d
    for r in range(nrows):
        s = src + r * src_stride - base
        d = dst + r * ncols
        for k in range(ncols):
            d[k] = s[i0[k]] * w0[k] + s[i1[k]] * w1[k]


cdef inline void _vrow(const float *a, const float *b, float h0, float h1, Py_ssize_t ncols,
                       float *dst) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(ncols):
        dst[k] = a[k] * h0 + b[k] * h1


cdef int _one(const float *coef, const float *protos, Py_ssize_t c, Py_ssize_t mh, Py_ssize_t mw,
              int64_t x0, int64_t y0, int64_t x1, int64_t y1, uint8_t *out, int f, bint direct,
              const int32_t *a0y, const int32_t *a1y, const float *u0y, const float *u1y,
              const int32_t *a0x, const int32_t *a1x, const float *u0x, const float *u1x,
              const int32_t *b0y, const int32_t *b1y, const float *v0y, const float *v1y,
              const int32_t *b0x, const int32_t *b1x, const float *v0x, const float *v1x) noexcept nogil:
    cdef int64_t ur0, ur1, uc0, uc1, pr0, pr1, pc0, pc1, cw = x1 - x0, chh = y1 - y0
    cdef Py_ssize_t nr, nc, unr, unc, r, k, q, y, plane = mh * mw
    cdef double *acc = NULL
    cdef float *lg = NULL
    cdef float *hz = NULL
    cdef float *up = NULL
    cdef float *row = NULL
    cdef const float *u
    cdef const float *p
    cdef double cf
    cdef float v
    cdef int64_t t
    if direct:
        ur0 = y0; ur1 = y1 - 1; uc0 = x0; uc1 = x1 - 1
    else:
        ur0 = b0y[y0]; ur1 = b1y[y1 - 1]; uc0 = b0x[x0]; uc1 = b1x[x1 - 1]
    if f > 1:
        pr0 = a0y[ur0]; pr1 = a1y[ur1]; pc0 = a0x[uc0]; pc1 = a1x[uc1]
    else:
        pr0 = ur0; pr1 = ur1; pc0 = uc0; pc1 = uc1
    nr = pr1 - pr0 + 1
    nc = pc1 - pc0 + 1
    unr = ur1 - ur0 + 1
    unc = uc1 - uc0 + 1
    acc = <double *>malloc(nc * sizeof(double))
    lg = <float *>malloc(nr * nc * sizeof(float))
    if acc == NULL or lg == NULL:
        free(acc); free(lg)
        return -1
    # 1. logits on the prototype rectangle
    for r in range(nr):
        for q in range(nc):
            acc[q] = 0.0
        for k in range(c):
            cf = coef[k]
            p = protos + k * plane + (pr0 + r) * mw + pc0
            for q in range(nc):
                acc[q] += cf * p[q]
        for q in range(nc):
            lg[r * nc + q] = <float>acc[q]
    free(acc)
    # 2. upsample by f
    if f > 1:
        hz = <float *>malloc(nr * unc * sizeof(float))
        up = <float *>malloc(unr * unc * sizeof(float))
        if hz == NULL or up == NULL:
            free(lg); free(hz); free(up)
            return -1
        _hpass(lg, nc, nr, a0x + uc0, a1x + uc0, u0x + uc0, u1x + uc0, unc, <int32_t>pc0, hz)
        for r in range(unr):
            _vrow(hz + (a0y[ur0 + r] - pr0) * unc, hz + (a1y[ur0 + r] - pr0) * unc,
                  u0y[ur0 + r], u1y[ur0 + r], unc, up + r * unc)
        free(hz)
        free(lg)
        lg = NULL
        u = up
    else:
        u = lg
    # 3. resize onto the crop, 4. threshold
    if direct:
        for y in range(chh):
            for q in range(cw):
                out[y * cw + q] = u[y * unc + q] > 0
    else:
        hz = <float *>malloc(unr * cw * sizeof(float))
        row = <float *>malloc(cw * sizeof(float))
        if hz == NULL or row == NULL:
            free(lg); free(up); free(hz); free(row)
            return -1
        _hpass(u, unc, unr, b0x + x0, b1x + x0, v0x + x0, v1x + x0, cw, <int32_t>uc0, hz)
        for y in range(chh):
            _vrow(hz + (b0y[y0 + y] - ur0) * cw, hz + (b1y[y0 + y] - ur0) * cw,
                  v0y[y0 + y], v1y[y0 + y], cw, row)
            for q in range(cw):
                out[y * cw + q] = row[q] > 0
        free(hz)
        free(row)
    free(lg)
    free(up)
    return 0


def assemble(const float[:, ::1] coeffs, const float[:, :, ::1] protos, const int64_t[:, ::1] bounds,
             const int64_t[::1] starts, uint8_t[::1] out, int f, bint direct,
             const int32_t[::1] a0y, const int32_t[::1] a1y, const float[::1] u0y, const float[::1] u1y,
             const int32_t[::1] a0x, const int32_t[::1] a1x, const float[::1] u0x, const float[::1] u1x,
             const int32_t[::1] b0y, const int32_t[::1] b1y, const float[::1] v0y, const float[::1] v1y,
             const int32_t[::1] b0x, const int32_t[::1] b1x, const float[::1] v0x, const float[::1] v1x) -> int:
    """Fill ``out[starts[i]:starts[i + 1]]`` with the ``(y1 - y0, x1 - x0)`` crop of mask ``i``
    (``bounds[i] = x0, y0, x1, y1``, empty when ``x1 <= x0`` or ``y1 <= y0``). Tables: ``a*/u*``
    the upsample taps (length ``uh``/``uw``), ``b*/v*`` the resize taps (length ``H``/``W``, indices
    into the upsampled grid). Returns 0, or -1 when out of memory."""
    cdef Py_ssize_t n = coeffs.shape[0], c = coeffs.shape[1], mh = protos.shape[1], mw = protos.shape[2]
    cdef Py_ssize_t i
    cdef int rc = 0
    cdef int64_t x0, y0, x1, y1
    if n == 0:
        return 0
    with nogil:
        for i in range(n):
            x0 = bounds[i, 0]; y0 = bounds[i, 1]; x1 = bounds[i, 2]; y1 = bounds[i, 3]
            if x1 <= x0 or y1 <= y0:
                continue
            if _one(&coeffs[i, 0], &protos[0, 0, 0], c, mh, mw, x0, y0, x1, y1, &out[starts[i]], f, direct,
                    &a0y[0], &a1y[0], &u0y[0], &u1y[0], &a0x[0], &a1x[0], &u0x[0], &u1x[0],
                    &b0y[0], &b1y[0], &v0y[0], &v1y[0], &b0x[0], &b1x[0], &v0x[0], &v1x[0]) != 0:
                rc = -1
                break
    return rc
