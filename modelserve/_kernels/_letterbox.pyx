"""Fused letterbox kernel: uint8 HxWx3 pixels -> resized, padded, channel-swapped CHW tensor.

One pass per output row, no intermediate image: OpenCV's fixed-point ``INTER_LINEAR`` (a
horizontal pass of each needed source row into planar int rows, cached two at a time, then the
vertical pass with OpenCV's rounding), and the result goes straight into its output plane as
float32 ``v / 255`` (true division, as Ultralytics/torch), float16 (``v / 255`` rounded once, a
lookup table) or the raw uint8. The inner loops are C with SSE2 intrinsics (x86-64 baseline) and a
portable scalar path elsewhere; both compute exactly OpenCV's integer arithmetic.

A :class:`Plan` holds everything that depends only on the geometry (tap tables, packed weights,
SIMD path), checked once when it is built (``modelserve.ops`` caches one per geometry); ``run``
checks the buffer sizes, then works without the GIL and never raises (it returns -1 only when it
cannot allocate its two row buffers).
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t


cdef extern from *:
    """
    /* Fused letterbox kernel in C (SSE2 where available, portable scalar otherwise). */
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define MS_SSE2 1
    #endif

    enum { MS_F32 = 0, MS_F16 = 1, MS_U8 = 2 };

    static inline uint32_t ms_load_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

    /* OpenCV's vertical fixed-point step for one value (scalar loop of VResizeLinear, saturated like
       the SIMD pack). */
    static inline int ms_vpix(int32_t r0, int32_t r1, int32_t b0, int32_t b1) {
        int32_t v = (((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2;
        return v < 0 ? 0 : (v > 255 ? 255 : v);
    }

    /* Horizontal taps of one (two, when Sb != NULL) interleaved BGR source rows into planar int
       rows (x 2048). wv: per output x, the 16-bit weight pair (a0, a1) repeated over 128 bits. */
    static void ms_hpass(const uint8_t *Sa, const uint8_t *Sb, int32_t *const *Da, int32_t *const *Db,
                         Py_ssize_t rw, const int32_t *xo0, const int32_t *xo1, const int32_t *xa0,
                         const int32_t *xa1, const int32_t *wv, Py_ssize_t vec_end) {
        Py_ssize_t dx = 0;
    #ifdef MS_SSE2
        const __m128i z = _mm_setzero_si128();
        for (; dx + 4 <= vec_end; dx += 4) {
            __m128i ra[4], rb[4];
            int k;
            for (k = 0; k < 4; k++) {
                const Py_ssize_t o0 = xo0[dx + k], o1 = xo1[dx + k];
                const __m128i w = _mm_loadu_si128((const __m128i *)(wv + 4 * (dx + k)));
                __m128i p0 = _mm_cvtsi32_si128((int)ms_load_u32(Sa + o0));
                __m128i p1 = _mm_cvtsi32_si128((int)ms_load_u32(Sa + o1));
                ra[k] = _mm_madd_epi16(_mm_unpacklo_epi8(_mm_unpacklo_epi8(p0, p1), z), w);
                if (Sb != NULL) {
                    p0 = _mm_cvtsi32_si128((int)ms_load_u32(Sb + o0));
                    p1 = _mm_cvtsi32_si128((int)ms_load_u32(Sb + o1));
                    rb[k] = _mm_madd_epi16(_mm_unpacklo_epi8(_mm_unpacklo_epi8(p0, p1), z), w);
                }
            }
            {
                __m128i t0 = _mm_unpacklo_epi32(ra[0], ra[1]);
                __m128i t1 = _mm_unpackhi_epi32(ra[0], ra[1]);
                __m128i t2 = _mm_unpacklo_epi32(ra[2], ra[3]);
                __m128i t3 = _mm_unpackhi_epi32(ra[2], ra[3]);
                _mm_storeu_si128((__m128i *)(Da[0] + dx), _mm_unpacklo_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Da[1] + dx), _mm_unpackhi_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Da[2] + dx), _mm_unpacklo_epi64(t1, t3));
            }
            if (Sb != NULL) {
                __m128i t0 = _mm_unpacklo_epi32(rb[0], rb[1]);
                __m128i t1 = _mm_unpackhi_epi32(rb[0], rb[1]);
                __m128i t2 = _mm_unpacklo_epi32(rb[2], rb[3]);
                __m128i t3 = _mm_unpackhi_epi32(rb[2], rb[3]);
                _mm_storeu_si128((__m128i *)(Db[0] + dx), _mm_unpacklo_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Db[1] + dx), _mm_unpackhi_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Db[2] + dx), _mm_unpacklo_epi64(t1, t3));
            }
        }
    #endif
        for (; dx < rw; dx++) {
            const int32_t a0 = xa0[dx], a1 = xa1[dx];
            const uint8_t *p = Sa + xo0[dx], *q = Sa + xo1[dx];
            Da[0][dx] = p[0] * a0 + q[0] * a1;
            Da[1][dx] = p[1] * a0 + q[1] * a1;
            Da[2][dx] = p[2] * a0 + q[2] * a1;
            if (Sb != NULL) {
                p = Sb + xo0[dx];
                q = Sb + xo1[dx];
                Db[0][dx] = p[0] * a0 + q[0] * a1;
                Db[1][dx] = p[1] * a0 + q[1] * a1;
                Db[2][dx] = p[2] * a0 + q[2] * a1;
            }
        }
    }

    #if defined(MS_SSE2) && (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    #include <immintrin.h>
    #include <tmmintrin.h>
    #define MS_SSSE3 1
    /* The same horizontal pass with SSSE3 (chosen at run time): one 8-byte load holds both taps
       (x1 == x0 + 3 whenever the second weight is non-zero; where it is zero the second pixel does
       not matter), a byte shuffle pairs them per channel, one multiply-add applies the weights.
       vec_end: columns below it can read 8 bytes at x0 inside the row. */
    __attribute__((target("ssse3")))
    static void ms_hpass_ssse3(const uint8_t *Sa, const uint8_t *Sb, int32_t *const *Da, int32_t *const *Db,
                               Py_ssize_t rw, const int32_t *xo0, const int32_t *xo1, const int32_t *xa0,
                               const int32_t *xa1, const int32_t *wv, Py_ssize_t vec_end) {
        Py_ssize_t dx = 0;
        const __m128i sh = _mm_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
        for (; dx + 4 <= vec_end; dx += 4) {
            __m128i ra[4], rb[4];
            int k;
            for (k = 0; k < 4; k++) {
                const Py_ssize_t o0 = xo0[dx + k];
                const __m128i w = _mm_loadu_si128((const __m128i *)(wv + 4 * (dx + k)));
                ra[k] = _mm_madd_epi16(_mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(Sa + o0)), sh), w);
                if (Sb != NULL)
                    rb[k] = _mm_madd_epi16(_mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(Sb + o0)), sh), w);
            }
            {
                __m128i t0 = _mm_unpacklo_epi32(ra[0], ra[1]);
                __m128i t1 = _mm_unpackhi_epi32(ra[0], ra[1]);
                __m128i t2 = _mm_unpacklo_epi32(ra[2], ra[3]);
                __m128i t3 = _mm_unpackhi_epi32(ra[2], ra[3]);
                _mm_storeu_si128((__m128i *)(Da[0] + dx), _mm_unpacklo_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Da[1] + dx), _mm_unpackhi_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Da[2] + dx), _mm_unpacklo_epi64(t1, t3));
            }
            if (Sb != NULL) {
                __m128i t0 = _mm_unpacklo_epi32(rb[0], rb[1]);
                __m128i t1 = _mm_unpackhi_epi32(rb[0], rb[1]);
                __m128i t2 = _mm_unpacklo_epi32(rb[2], rb[3]);
                __m128i t3 = _mm_unpackhi_epi32(rb[2], rb[3]);
                _mm_storeu_si128((__m128i *)(Db[0] + dx), _mm_unpacklo_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Db[1] + dx), _mm_unpackhi_epi64(t0, t2));
                _mm_storeu_si128((__m128i *)(Db[2] + dx), _mm_unpacklo_epi64(t1, t3));
            }
        }
        for (; dx < rw; dx++) {
            const int32_t a0 = xa0[dx], a1 = xa1[dx];
            const uint8_t *p = Sa + xo0[dx], *q = Sa + xo1[dx];
            Da[0][dx] = p[0] * a0 + q[0] * a1;
            Da[1][dx] = p[1] * a0 + q[1] * a1;
            Da[2][dx] = p[2] * a0 + q[2] * a1;
            if (Sb != NULL) {
                p = Sb + xo0[dx];
                q = Sb + xo1[dx];
                Db[0][dx] = p[0] * a0 + q[0] * a1;
                Db[1][dx] = p[1] * a0 + q[1] * a1;
                Db[2][dx] = p[2] * a0 + q[2] * a1;
            }
        }
    }

    /* AVX2 (+F16C) versions, chosen at run time: the same arithmetic, two pixels per 256-bit register.
       wv8: per group of 8 columns and k in 0..3, the weight pairs of columns k and k + 4.
       vec_end: columns below it can read 16 bytes at x0 inside the row. */
    __attribute__((target("avx2")))
    static void ms_hpass_avx2(const uint8_t *Sa, const uint8_t *Sb, int32_t *const *Da, int32_t *const *Db,
                              Py_ssize_t rw, const int32_t *xo0, const int32_t *xo1, const int32_t *xa0,
                              const int32_t *xa1, const int32_t *wv8, Py_ssize_t vec_end) {
        Py_ssize_t dx = 0;
        const __m256i sh = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
                                            0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1);
        for (; dx + 8 <= vec_end; dx += 8) {
            __m256i ra[4], rb[4];
            int k;
            for (k = 0; k < 4; k++) {
                const Py_ssize_t o0 = xo0[dx + k], o4 = xo0[dx + k + 4];
                const __m256i w = _mm256_loadu_si256((const __m256i *)(wv8 + 8 * (dx / 2 + k)));
                /* the high half is a 16-byte load so that it folds into vinserti128's memory operand
                   (a load and an ALU uop, instead of a shuffle-port uop) */
                __m256i p = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(Sa + o0))),
                                                    _mm_loadu_si128((const __m128i *)(Sa + o4)), 1);
                ra[k] = _mm256_madd_epi16(_mm256_shuffle_epi8(p, sh), w);
                if (Sb != NULL) {
                    p = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(Sb + o0))),
                                                _mm_loadu_si128((const __m128i *)(Sb + o4)), 1);
                    rb[k] = _mm256_madd_epi16(_mm256_shuffle_epi8(p, sh), w);
                }
            }
            {   /* per 128-bit lane: columns 0..3 | 4..7 -> planar, in order */
                __m256i t0 = _mm256_unpacklo_epi32(ra[0], ra[1]);
                __m256i t1 = _mm256_unpackhi_epi32(ra[0], ra[1]);
                __m256i t2 = _mm256_unpacklo_epi32(ra[2], ra[3]);
                __m256i t3 = _mm256_unpackhi_epi32(ra[2], ra[3]);
                _mm256_storeu_si256((__m256i *)(Da[0] + dx), _mm256_unpacklo_epi64(t0, t2));
                _mm256_storeu_si256((__m256i *)(Da[1] + dx), _mm256_unpackhi_epi64(t0, t2));
                _mm256_storeu_si256((__m256i *)(Da[2] + dx), _mm256_unpacklo_epi64(t1, t3));
            }
            if (Sb != NULL) {
                __m256i t0 = _mm256_unpacklo_epi32(rb[0], rb[1]);
                __m256i t1 = _mm256_unpackhi_epi32(rb[0], rb[1]);
                __m256i t2 = _mm256_unpacklo_epi32(rb[2], rb[3]);
                __m256i t3 = _mm256_unpackhi_epi32(rb[2], rb[3]);
                _mm256_storeu_si256((__m256i *)(Db[0] + dx), _mm256_unpacklo_epi64(t0, t2));
                _mm256_storeu_si256((__m256i *)(Db[1] + dx), _mm256_unpackhi_epi64(t0, t2));
                _mm256_storeu_si256((__m256i *)(Db[2] + dx), _mm256_unpacklo_epi64(t1, t3));
            }
        }
        for (; dx < rw; dx++) {
            const int32_t a0 = xa0[dx], a1 = xa1[dx];
            const uint8_t *p = Sa + xo0[dx], *q = Sa + xo1[dx];
            Da[0][dx] = p[0] * a0 + q[0] * a1;
            Da[1][dx] = p[1] * a0 + q[1] * a1;
            Da[2][dx] = p[2] * a0 + q[2] * a1;
            if (Sb != NULL) {
                p = Sb + xo0[dx];
                q = Sb + xo1[dx];
                Db[0][dx] = p[0] * a0 + q[0] * a1;
                Db[1][dx] = p[1] * a0 + q[1] * a1;
                Db[2][dx] = p[2] * a0 + q[2] * a1;
            }
        }
    }

    /* Vertical pass, float32 / float16 outputs, 16 values per step (see ms_vpass). Returns the
       number of values done; the caller finishes the row. */
    __attribute__((target("avx2,f16c")))
    static Py_ssize_t ms_vpass_avx2(const int32_t *r0, const int32_t *r1, int32_t b0, int32_t b1, void *dst,
                                    int otype, const uint16_t *lut16, Py_ssize_t n) {
        Py_ssize_t i = 0;
        float *of = (float *)dst;
        uint16_t *o16 = (uint16_t *)dst;
        const __m256i B0 = _mm256_set1_epi16((short)b0), B1 = _mm256_set1_epi16((short)b1);
        const __m256i two = _mm256_set1_epi16(2), z = _mm256_setzero_si256(), top = _mm256_set1_epi16(255);
        const __m256 hi255 = _mm256_set1_ps(0x1.01p-8f), lo255 = _mm256_set1_ps(0x1.010102p-24f);
        for (; i + 16 <= n; i += 16) {
            /* packs works per 128-bit lane: v = [i..i+3, i+8..i+11 | i+4..i+7, i+12..i+15] */
            __m256i x = _mm256_packs_epi32(_mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(r0 + i)), 4),
                                           _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(r0 + i + 8)), 4));
            __m256i y = _mm256_packs_epi32(_mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(r1 + i)), 4),
                                           _mm256_srai_epi32(_mm256_loadu_si256((const __m256i *)(r1 + i + 8)), 4));
            __m256i v = _mm256_add_epi16(_mm256_mulhi_epi16(x, B0), _mm256_mulhi_epi16(y, B1));
            v = _mm256_srai_epi16(_mm256_add_epi16(v, two), 2);
            v = _mm256_min_epi16(_mm256_max_epi16(v, z), top);
            {
                /* unpack per lane restores the order: lo = i..i+7, hi = i+8..i+15 */
                const __m256 v0 = _mm256_cvtepi32_ps(_mm256_unpacklo_epi16(v, z));
                const __m256 v1 = _mm256_cvtepi32_ps(_mm256_unpackhi_epi16(v, z));
                const __m256 f0 = _mm256_add_ps(_mm256_mul_ps(v0, hi255), _mm256_mul_ps(v0, lo255));
                const __m256 f1 = _mm256_add_ps(_mm256_mul_ps(v1, hi255), _mm256_mul_ps(v1, lo255));
                if (otype == MS_F32) {
                    _mm256_storeu_ps(of + i, f0);
                    _mm256_storeu_ps(of + i + 8, f1);
                } else {
                    /* F16C: float32 -> float16 rounding to nearest-even, as the SSE2 path */
                    const __m256i h16 = _mm256_set_m128i(_mm256_cvtps_ph(f1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                                         _mm256_cvtps_ph(f0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
                    _mm256_storeu_si256((__m256i *)(o16 + i), h16);
                }
            }
        }
        return i;
    }

    /* Highest instruction set to use: 1 SSE2, 2 SSSE3, 3 AVX2 + F16C; the environment variable
       MODELSERVE_SIMD=sse2|ssse3 caps it (read once; the tests use it to check every path). */
    static int ms_simd_level(void) {
        static int level = -1;
        if (level < 0) {
            const char *cap = getenv("MODELSERVE_SIMD");
            int l = 1;
            __builtin_cpu_init();
            if (__builtin_cpu_supports("ssse3")) l = 2;
            if (l == 2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) l = 3;
            if (cap != NULL && strcmp(cap, "sse2") == 0) l = 1;
            if (cap != NULL && strcmp(cap, "ssse3") == 0 && l > 2) l = 2;
            level = l;
        }
        return level;
    }

    static int ms_have_avx2(void) { return ms_simd_level() >= 3; }

    static int ms_have_ssse3(void) { return ms_simd_level() >= 2; }
    #endif

    /* Vertical pass of one plane row: float32 v / 255 (true division), or uint8 v. */
    static void ms_vpass(const int32_t *r0, const int32_t *r1, int32_t b0, int32_t b1, void *dst, int otype,
                         const uint16_t *lut16, uint8_t *tmp, Py_ssize_t n) {
        Py_ssize_t i = 0;
        float *of = (float *)dst;
        uint16_t *o16 = (uint16_t *)dst;
        uint8_t *o8 = otype == MS_U8 ? (uint8_t *)dst : tmp;
    #ifdef MS_SSSE3
        if (otype != MS_U8 && ms_have_avx2()) i = ms_vpass_avx2(r0, r1, b0, b1, dst, otype, lut16, n);
    #endif
    #ifdef MS_SSE2
        const __m128i B0 = _mm_set1_epi16((short)b0), B1 = _mm_set1_epi16((short)b1);
        const __m128i two = _mm_set1_epi16(2), z = _mm_setzero_si128(), top = _mm_set1_epi16(255);
        /* v / 255 for integer v in 0..255 without a division: v * HI is exact (HI has 12
           significant bits), v * HI + v * LO rounds once and equals the true quotient v / 255.0f
           for all 256 values (checked exhaustively; see modelserve.ops._check_div255). */
        const __m128 hi255 = _mm_set1_ps(0x1.01p-8f), lo255 = _mm_set1_ps(0x1.010102p-24f);
        for (; i + 8 <= n; i += 8) {
            __m128i x = _mm_packs_epi32(_mm_srai_epi32(_mm_loadu_si128((const __m128i *)(r0 + i)), 4),
                                        _mm_srai_epi32(_mm_loadu_si128((const __m128i *)(r0 + i + 4)), 4));
            __m128i y = _mm_packs_epi32(_mm_srai_epi32(_mm_loadu_si128((const __m128i *)(r1 + i)), 4),
                                        _mm_srai_epi32(_mm_loadu_si128((const __m128i *)(r1 + i + 4)), 4));
            __m128i v = _mm_add_epi16(_mm_mulhi_epi16(x, B0), _mm_mulhi_epi16(y, B1));
            v = _mm_srai_epi16(_mm_add_epi16(v, two), 2);
            v = _mm_min_epi16(_mm_max_epi16(v, z), top);
            if (otype == MS_F32) {
                const __m128 v0 = _mm_cvtepi32_ps(_mm_unpacklo_epi16(v, z)), v1 = _mm_cvtepi32_ps(_mm_unpackhi_epi16(v, z));
                __m128 f0 = _mm_add_ps(_mm_mul_ps(v0, hi255), _mm_mul_ps(v0, lo255));
                __m128 f1 = _mm_add_ps(_mm_mul_ps(v1, hi255), _mm_mul_ps(v1, lo255));
                _mm_storeu_ps(of + i, f0);
                _mm_storeu_ps(of + i + 4, f1);
            } else if (otype == MS_F16) {
                /* float16(v / 255): the float32 quotient rounded to nearest-even half. For v in
                   1..255 it is a normal half (checked for all 256 values against float64 / 255
                   and torch), v == 0 gives +0. */
                const __m128 v0 = _mm_cvtepi32_ps(_mm_unpacklo_epi16(v, z)), v1 = _mm_cvtepi32_ps(_mm_unpackhi_epi16(v, z));
                const __m128i fl = _mm_castps_si128(_mm_add_ps(_mm_mul_ps(v0, hi255), _mm_mul_ps(v0, lo255)));
                const __m128i fh = _mm_castps_si128(_mm_add_ps(_mm_mul_ps(v1, hi255), _mm_mul_ps(v1, lo255)));
                const __m128i bias = _mm_set1_epi32(0x0FFF), one = _mm_set1_epi32(1), eb = _mm_set1_epi32(112 << 10);
                __m128i hl = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(fl, bias), _mm_and_si128(_mm_srli_epi32(fl, 13), one)), 13);
                __m128i hh = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(fh, bias), _mm_and_si128(_mm_srli_epi32(fh, 13), one)), 13);
                __m128i h16 = _mm_packs_epi32(_mm_sub_epi32(hl, eb), _mm_sub_epi32(hh, eb));
                h16 = _mm_andnot_si128(_mm_cmpeq_epi16(v, z), h16);
                _mm_storeu_si128((__m128i *)(o16 + i), h16);
            } else {
                _mm_storel_epi64((__m128i *)(o8 + i), _mm_packus_epi16(v, v));
            }
        }
    #endif
        if (otype == MS_F32) {
            for (; i < n; i++) of[i] = (float)ms_vpix(r0[i], r1[i], b0, b1) / 255.0f;
        } else {
            Py_ssize_t i0 = i;
            for (; i < n; i++) o8[i] = (uint8_t)ms_vpix(r0[i], r1[i], b0, b1);
            if (otype == MS_F16)
                for (; i0 < n; i0++) o16[i0] = lut16[tmp[i0]];
        }
    }

    static void ms_fill(void *p, Py_ssize_t n, int otype, uint32_t bits) {
        Py_ssize_t i;
        if (n <= 0) return;
        if (otype == MS_U8) memset(p, (int)bits, (size_t)n);
        else if (otype == MS_F16) {
            uint16_t *q = (uint16_t *)p;
            i = 0;
    #ifdef MS_SSE2
            {
                __m128i b = _mm_set1_epi16((short)bits);
                for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(q + i), b);
            }
    #endif
            for (; i < n; i++) q[i] = (uint16_t)bits;
        }
        else {
            uint32_t *q = (uint32_t *)p;
            i = 0;
    #ifdef MS_SSE2
            {
                __m128i b = _mm_set1_epi32((int)bits);
                for (; i + 4 <= n; i += 4) _mm_storeu_si128((__m128i *)(q + i), b);
            }
    #endif
            for (; i < n; i++) q[i] = bits;
        }
    }

    /* Scatter source pixels (rows yo[dy], byte offsets xo[dx]; NULL: identity) into the planes,
       converted with the lookup tables. Plain stores: the tensor is read by the engine right
       after, so it should stay in cache. */
    static void ms_sample(const uint8_t *src, Py_ssize_t W, char *const *P, int otype, Py_ssize_t OW,
                          Py_ssize_t rw, Py_ssize_t rh, Py_ssize_t left, Py_ssize_t top, const int32_t *xo,
                          const int32_t *yo, const uint32_t *lut32, const uint16_t *lut16) {
        Py_ssize_t dx, dy;
        for (dy = 0; dy < rh; dy++) {
            const uint8_t *S = src + (yo != NULL ? yo[dy] : dy) * W * 3;
            const size_t off = (size_t)((top + dy) * OW + left);
            if (otype == MS_F32) {
                uint32_t *q0 = (uint32_t *)P[0] + off, *q1 = (uint32_t *)P[1] + off, *q2 = (uint32_t *)P[2] + off;
                if (xo == NULL)
                    for (dx = 0; dx < rw; dx++) { q0[dx] = lut32[S[3*dx]]; q1[dx] = lut32[S[3*dx+1]]; q2[dx] = lut32[S[3*dx+2]]; }
                else
                    for (dx = 0; dx < rw; dx++) { const uint8_t *p = S + xo[dx]; q0[dx] = lut32[p[0]]; q1[dx] = lut32[p[1]]; q2[dx] = lut32[p[2]]; }
            } else if (otype == MS_F16) {
                uint16_t *q0 = (uint16_t *)P[0] + off, *q1 = (uint16_t *)P[1] + off, *q2 = (uint16_t *)P[2] + off;
                if (xo == NULL)
                    for (dx = 0; dx < rw; dx++) { q0[dx] = lut16[S[3*dx]]; q1[dx] = lut16[S[3*dx+1]]; q2[dx] = lut16[S[3*dx+2]]; }
                else
                    for (dx = 0; dx < rw; dx++) { const uint8_t *p = S + xo[dx]; q0[dx] = lut16[p[0]]; q1[dx] = lut16[p[1]]; q2[dx] = lut16[p[2]]; }
            } else {
                uint8_t *q0 = (uint8_t *)P[0] + off, *q1 = (uint8_t *)P[1] + off, *q2 = (uint8_t *)P[2] + off;
                if (xo == NULL)
                    for (dx = 0; dx < rw; dx++) { q0[dx] = S[3*dx]; q1[dx] = S[3*dx+1]; q2[dx] = S[3*dx+2]; }
                else
                    for (dx = 0; dx < rw; dx++) { const uint8_t *p = S + xo[dx]; q0[dx] = p[0]; q1[dx] = p[1]; q2[dx] = p[2]; }
            }
        }
    }

    typedef void (*ms_hpass_fn)(const uint8_t *, const uint8_t *, int32_t *const *, int32_t *const *, Py_ssize_t,
                                const int32_t *, const int32_t *, const int32_t *, const int32_t *, const int32_t *,
                                Py_ssize_t);

    enum { MS_CONVERT = 0, MS_SAMPLE = 1, MS_LINEAR = 2 };

    /* Everything about one geometry (source H x W -> rw x rh placed at left, top in OH x OW) that
       does not depend on the pixels: the tap tables, the packed weights, the SIMD path, how far the
       vector loads may go, and the float32/float16 lookup tables. Built once, then read-only, so
       one plan serves any number of threads at once. */
    typedef struct {
        Py_ssize_t H, W, OH, OW, rw, rh, left, top, vec_end;
        int mode;
        int32_t *xo0, *xo1, *xa0, *xa1, *yo0, *yo1, *yb0, *yb1, *wv;
        uint32_t lut32[256];
        uint16_t lut16[256];
        ms_hpass_fn hpass;
        int32_t *mem;
    } ms_plan;

    static void ms_plan_free(ms_plan *p) { free(p->mem); p->mem = NULL; }

    /* x tables have rw entries, y tables rh (both ignored when no resize is needed). Returns 0, or
       -1 when out of memory. The caller has checked the sizes and that every tap is in range. */
    static int ms_plan_init(ms_plan *p, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t rw,
                            Py_ssize_t rh, Py_ssize_t left, Py_ssize_t top, const int32_t *xo0, const int32_t *xo1,
                            const int32_t *xa0, const int32_t *xa1, const int32_t *yo0, const int32_t *yo1,
                            const int32_t *yb0, const int32_t *yb1, const uint32_t *lut32, const uint16_t *lut16) {
        Py_ssize_t dx, dy;
        int trivial = 1;
        memset(p, 0, sizeof(*p));
        p->H = H; p->W = W; p->OH = OH; p->OW = OW; p->rw = rw; p->rh = rh; p->left = left; p->top = top;
        memcpy(p->lut32, lut32, sizeof(p->lut32));
        memcpy(p->lut16, lut16, sizeof(p->lut16));
        p->hpass = ms_hpass;
        if (rw == W && rh == H) { p->mode = MS_CONVERT; return 0; }
        /* 4 x tables + packed weights (4 per column, 16 spare) + 4 y tables */
        p->mem = (int32_t *)malloc((size_t)(8 * rw + 16 + 4 * rh) * sizeof(int32_t));
        if (p->mem == NULL) return -1;
        p->xo0 = p->mem; p->xo1 = p->xo0 + rw; p->xa0 = p->xo1 + rw; p->xa1 = p->xa0 + rw;
        p->wv = p->xa1 + rw;
        p->yo0 = p->wv + 4 * rw + 16; p->yo1 = p->yo0 + rh; p->yb0 = p->yo1 + rh; p->yb1 = p->yb0 + rh;
        memcpy(p->xo0, xo0, (size_t)rw * sizeof(int32_t)); memcpy(p->xo1, xo1, (size_t)rw * sizeof(int32_t));
        memcpy(p->xa0, xa0, (size_t)rw * sizeof(int32_t)); memcpy(p->xa1, xa1, (size_t)rw * sizeof(int32_t));
        memcpy(p->yo0, yo0, (size_t)rh * sizeof(int32_t)); memcpy(p->yo1, yo1, (size_t)rh * sizeof(int32_t));
        memcpy(p->yb0, yb0, (size_t)rh * sizeof(int32_t)); memcpy(p->yb1, yb1, (size_t)rh * sizeof(int32_t));
        /* Every tap weight (2048, 0) (e.g. 1920x1080 -> 640x360, any odd integer factor): OpenCV's
           arithmetic gives ((2048 * ((p * 2048) >> 4)) >> 16 + 2) >> 2 == p, the source pixel
           itself. Sample it directly. */
        for (dx = 0; dx < rw && trivial; dx++) trivial = xa0[dx] == 2048 && xa1[dx] == 0;
        for (dy = 0; dy < rh && trivial; dy++) trivial = yb0[dy] == 2048 && yb1[dy] == 0;
        if (trivial) { p->mode = MS_SAMPLE; return 0; }
        p->mode = MS_LINEAR;
        for (dx = 0; dx < rw; dx++) {
            int32_t w = (int32_t)(((uint32_t)xa1[dx] << 16) | ((uint32_t)xa0[dx] & 0xFFFFu));
            p->wv[4 * dx] = p->wv[4 * dx + 1] = p->wv[4 * dx + 2] = p->wv[4 * dx + 3] = w;
        }
        /* vector loads read 4 bytes per tap (8 at x0 with SSSE3): stay inside the source row */
        p->vec_end = rw;
        while (p->vec_end > 0 && (Py_ssize_t)xo1[p->vec_end - 1] + 4 > 3 * W) p->vec_end--;
        while (p->vec_end > 0 && (Py_ssize_t)xo0[p->vec_end - 1] + 4 > 3 * W) p->vec_end--;
    #ifdef MS_SSSE3
        if (ms_have_ssse3()) {
            p->hpass = ms_hpass_ssse3;
            while (p->vec_end > 0 && (Py_ssize_t)xo0[p->vec_end - 1] + 8 > 3 * W) p->vec_end--;
        }
        if (ms_have_avx2()) { /* weights of columns k and k + 4 side by side, per group of 8 */
            Py_ssize_t g, k2, j;
            int32_t *wv = p->wv;
            p->hpass = ms_hpass_avx2;
            while (p->vec_end > 0 && (Py_ssize_t)xo0[p->vec_end - 1] + 16 > 3 * W) p->vec_end--;
            for (g = 0; g + 8 <= rw; g += 8)
                for (k2 = 0; k2 < 4; k2++)
                    for (j = 0; j < 4; j++) {
                        wv[4 * g + 8 * k2 + j] = (int32_t)(((uint32_t)xa1[g + k2] << 16) | ((uint32_t)xa0[g + k2] & 0xFFFFu));
                        wv[4 * g + 8 * k2 + 4 + j] = (int32_t)(((uint32_t)xa1[g + k2 + 4] << 16) | ((uint32_t)xa0[g + k2 + 4] & 0xFFFFu));
                    }
        }
    #endif
        return 0;
    }

    /* The whole letterbox of one image with a plan. out: (3, OH, OW) elements of size 4/2/1
       (otype). Returns 0, or -1 when out of memory. */
    static int ms_plan_run(const ms_plan *p, const uint8_t *src, void *out, int otype, int pad, int rgb) {
        const Py_ssize_t W = p->W, OH = p->OH, OW = p->OW, rw = p->rw, rh = p->rh, left = p->left, top = p->top;
        size_t es = otype == MS_F32 ? 4 : (otype == MS_F16 ? 2 : 1);
        Py_ssize_t plane = OH * OW, right = OW - left - rw, c, y, dy;
        char *base = (char *)out, *P[3];
        uint32_t padbits = otype == MS_F32 ? p->lut32[pad] : (otype == MS_F16 ? p->lut16[pad] : (uint32_t)pad);
        int32_t *buf, *slot[2][3];
        uint8_t *tmp;
        Py_ssize_t held[2] = {-1, -1};

        for (c = 0; c < 3; c++) {
            char *q = base + (size_t)(c * plane) * es;
            ms_fill(q, top * OW, otype, padbits);
            ms_fill(q + (size_t)((top + rh) * OW) * es, (OH - top - rh) * OW, otype, padbits);
            if (left > 0 || right > 0)
                for (y = top; y < top + rh; y++) {
                    ms_fill(q + (size_t)(y * OW) * es, left, otype, padbits);
                    ms_fill(q + (size_t)(y * OW + left + rw) * es, right, otype, padbits);
                }
        }
        /* plane receiving source channel k (BGR input; RGB output when rgb) */
        P[0] = base + (size_t)((rgb ? 2 : 0) * plane) * es;
        P[1] = base + (size_t)plane * es;
        P[2] = base + (size_t)((rgb ? 0 : 2) * plane) * es;

        if (p->mode == MS_CONVERT) { /* no resize: convert and de-interleave */
            ms_sample(src, W, P, otype, OW, rw, rh, left, top, NULL, NULL, p->lut32, p->lut16);
            return 0;
        }
        if (p->mode == MS_SAMPLE) {
            ms_sample(src, W, P, otype, OW, rw, rh, left, top, p->xo0, p->yo0, p->lut32, p->lut16);
            return 0;
        }

        buf = (int32_t *)malloc((size_t)(6 * rw) * sizeof(int32_t) + (size_t)(3 * rw + 64));
        if (buf == NULL) return -1;
        for (c = 0; c < 3; c++) { slot[0][c] = buf + c * rw; slot[1][c] = buf + (3 + c) * rw; }
        tmp = (uint8_t *)(buf + 6 * rw);

        for (dy = 0; dy < rh; dy++) {
            /* a row weighted 0 adds (0 * r) >> 16 == 0: only s0 is needed */
            Py_ssize_t s0 = p->yo0[dy], s1 = p->yb1[dy] == 0 ? p->yo0[dy] : p->yo1[dy], k;
            int i0, i1, have0 = held[0] == s0 || held[1] == s0, have1 = held[0] == s1 || held[1] == s1;
            if (!have0 && !have1 && s0 != s1) { /* both rows new: one pass over the taps */
                held[0] = s0;
                held[1] = s1;
                p->hpass(src + s0 * W * 3, src + s1 * W * 3, slot[0], slot[1], rw, p->xo0, p->xo1, p->xa0, p->xa1,
                         p->wv, p->vec_end);
            } else {
                if (!have0) {
                    k = held[0] == s1 ? 1 : 0;
                    p->hpass(src + s0 * W * 3, NULL, slot[k], NULL, rw, p->xo0, p->xo1, p->xa0, p->xa1, p->wv, p->vec_end);
                    held[k] = s0;
                }
                if (held[0] != s1 && held[1] != s1) {
                    k = held[0] == s0 ? 1 : 0;
                    p->hpass(src + s1 * W * 3, NULL, slot[k], NULL, rw, p->xo0, p->xo1, p->xa0, p->xa1, p->wv, p->vec_end);
                    held[k] = s1;
                }
            }
            i0 = held[0] == s0 ? 0 : 1;
            i1 = held[0] == s1 ? 0 : 1;
            for (c = 0; c < 3; c++)
                ms_vpass(slot[i0][c], slot[i1][c], p->yb0[dy], p->yb1[dy],
                         P[c] + (size_t)((top + dy) * OW + left) * es, otype, p->lut16, tmp, rw);
        }
        free(buf);
        return 0;
    }
    """
    ctypedef struct ms_plan:
        Py_ssize_t H, W, OH, OW, rw, rh, left, top
        int mode
    int ms_plan_init(ms_plan* p, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t rw,
                     Py_ssize_t rh, Py_ssize_t left, Py_ssize_t top, const int32_t* xo0, const int32_t* xo1,
                     const int32_t* xa0, const int32_t* xa1, const int32_t* yo0, const int32_t* yo1,
                     const int32_t* yb0, const int32_t* yb1, const uint32_t* lut32, const uint16_t* lut16)
    void ms_plan_free(ms_plan* p)
    int ms_plan_run(const ms_plan* p, const uint8_t* src, void* out, int otype, int pad, int rgb) nogil


cdef inline bint _taps_ok(const int32_t[::1] o0, const int32_t[::1] o1, const int32_t[::1] a0,
                          const int32_t[::1] a1, Py_ssize_t n, Py_ssize_t hi, Py_ssize_t step):
    """Each table has n entries, offsets are multiples of ``step`` in [0, hi], weights in [0, 2048]."""
    cdef Py_ssize_t i
    if o0.shape[0] < n or o1.shape[0] < n or a0.shape[0] < n or a1.shape[0] < n:
        return False
    for i in range(n):
        if not (0 <= o0[i] <= hi and 0 <= o1[i] <= hi and o0[i] % step == 0 and o1[i] % step == 0):
            return False
        if not (0 <= a0[i] <= 2048 and 0 <= a1[i] <= 2048):
            return False
    return True


cdef class Plan:
    """The precomputed letterbox of one geometry: a ``H x W`` BGR uint8 image resized to
    ``rw x rh`` and placed at (``left``, ``top``) in a ``(3, OH, OW)`` tensor. ``xo*`` are byte
    offsets (3 * x) of the two horizontal taps, ``xa*``/``yb*`` their weights (1/2048), ``yo*`` the
    rows (``modelserve._numpy_ops.linear_taps``); ``lut32``/``lut16`` hold the bit patterns of
    ``v / 255`` as float32/float16. The tables are checked and copied; a plan is immutable and
    may be used by many threads at once."""

    cdef ms_plan plan
    cdef bint ready

    def __cinit__(self, Py_ssize_t H, Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t rw, Py_ssize_t rh,
                  Py_ssize_t left, Py_ssize_t top,
                  const int32_t[::1] xo0, const int32_t[::1] xo1, const int32_t[::1] xa0, const int32_t[::1] xa1,
                  const int32_t[::1] yo0, const int32_t[::1] yo1, const int32_t[::1] yb0, const int32_t[::1] yb1,
                  const uint32_t[::1] lut32, const uint16_t[::1] lut16):
        self.ready = False
        if H < 1 or W < 1 or rw < 1 or rh < 1 or left < 0 or top < 0 or left + rw > OW or top + rh > OH:
            raise ValueError(f"bad letterbox geometry {H}x{W} -> {rw}x{rh} at ({left}, {top}) in {OH}x{OW}")
        if lut32.shape[0] != 256 or lut16.shape[0] != 256:
            raise ValueError("lut32 and lut16 must have 256 entries")
        if not (rw == W and rh == H):
            if not _taps_ok(xo0, xo1, xa0, xa1, rw, 3 * (W - 1), 3) or not _taps_ok(yo0, yo1, yb0, yb1, rh, H - 1, 1):
                raise ValueError("letterbox tap tables are too short or out of range")
        if ms_plan_init(&self.plan, H, W, OH, OW, rw, rh, left, top, &xo0[0], &xo1[0], &xa0[0], &xa1[0],
                        &yo0[0], &yo1[0], &yb0[0], &yb1[0], &lut32[0], &lut16[0]) != 0:
            raise MemoryError("letterbox: could not allocate the plan's tables")
        self.ready = True

    def __dealloc__(self):
        ms_plan_free(&self.plan)

    def run(self, image, out, int otype, int pad_value, bint rgb):
        """Write the letterboxed ``image`` (C-contiguous ``H x W x 3`` uint8) into ``out``, a
        C-contiguous writeable ``(3, OH, OW)`` array of float32 (``otype`` 0), float16 (1) or
        uint8 (2). Buffers of the wrong size raise ValueError. Returns 0, or -1 when out of memory."""
        cdef Py_buffer ib, ob
        cdef Py_ssize_t es
        cdef int rc
        if not 0 <= otype <= 2 or not 0 <= pad_value <= 255:
            raise ValueError(f"bad otype {otype} or pad value {pad_value}")
        es = 4 if otype == 0 else (2 if otype == 1 else 1)
        PyObject_GetBuffer(image, &ib, PyBUF_C_CONTIGUOUS)
        try:
            PyObject_GetBuffer(out, &ob, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
            try:
                if ib.len != self.plan.H * self.plan.W * 3 or ob.len != 3 * self.plan.OH * self.plan.OW * es:
                    raise ValueError("image or output buffer does not match the letterbox plan")
                with nogil:
                    rc = ms_plan_run(&self.plan, <const uint8_t*>ib.buf, ob.buf, otype, pad_value, rgb)
            finally:
                PyBuffer_Release(&ob)
        finally:
            PyBuffer_Release(&ib)
        return rc
