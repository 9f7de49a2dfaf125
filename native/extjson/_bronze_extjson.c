/* BSON change event -> one line of MongoDB Extended JSON (relaxed or canonical) with `_seq`.
 *
 * One pass over the raw bytes, no Python object per value. It writes what bson.json_util writes
 * with the app's options (DATETIME_AUTO, tz_aware, UUID representation unspecified), and returns
 * None for anything it does not write itself, so the caller takes the json_util path for it:
 * strings or keys that are not valid UTF-8, the deprecated types (undefined, DBPointer, symbol),
 * Decimal128 NaN/infinities/non-canonical values, and malformed BSON.
 *
 *   encode(raw: bytes, seq: int, canonical: bool) -> bytes | None   (one line ending in "\n")
 *
 * And the few fields a run routes a change event by, read in the same way (no Python object per
 * value, nothing else of the event decoded):
 *
 *   fields(raw: bytes) -> (operationType, clusterTime seconds, increment, _id._data, ns.db, ns.coll)
 *                         | None   (None: not the usual shape; the caller reads the fields itself)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 200
#define BAIL 1   /* not written here: the caller falls back */
#define ERROR -1 /* a Python exception is set */

typedef struct {
    PyObject *bytes; /* the line being written, resized as it grows */
    char *buf;
    Py_ssize_t len;
    Py_ssize_t cap;
    int canonical;
} out_t;

static int grow(out_t *o, Py_ssize_t need) {
    Py_ssize_t cap = o->cap * 2;
    if (cap < o->len + need) cap = o->len + need + 256;
    if (_PyBytes_Resize(&o->bytes, cap) < 0) return ERROR;
    o->buf = PyBytes_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

#define RESERVE(o, n) \
    do { if ((o)->len + (Py_ssize_t)(n) > (o)->cap && grow((o), (n)) < 0) return ERROR; } while (0)

static inline int put(out_t *o, const char *s, Py_ssize_t n) {
    RESERVE(o, n);
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}

#define PUT_LIT(o, s) put((o), (s), (Py_ssize_t)sizeof(s) - 1)

static inline int32_t le32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static inline uint64_t le64u(const uint8_t *p) {
    return (uint64_t)(uint32_t)le32(p) | (uint64_t)(uint32_t)le32(p + 4) << 32;
}

static int put_int(out_t *o, int64_t value) {
    char tmp[24];
    char *end = tmp + sizeof(tmp), *p = end;
    uint64_t u = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
    if (value < 0) *--p = '-';
    return put(o, p, end - p);
}

/* A JSON string from UTF-8 bytes; BAIL when they are not valid UTF-8 as Python's strict decoder
 * defines it (no surrogates, no overlong forms, nothing above U+10FFFF). */
static int put_string(out_t *o, const uint8_t *s, Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    Py_ssize_t i = 0, run = 0;
    RESERVE(o, n + 2);
    o->buf[o->len++] = '"';
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\') { i++; continue; }
            if (put(o, (const char *)s + run, i - run) < 0) return ERROR;
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (c == '"' || c == '\\') { esc[1] = (char)c; if (put(o, esc, 2) < 0) return ERROR; }
            else if (c == '\n') { if (PUT_LIT(o, "\\n") < 0) return ERROR; }
            else if (c == '\t') { if (PUT_LIT(o, "\\t") < 0) return ERROR; }
            else if (c == '\r') { if (PUT_LIT(o, "\\r") < 0) return ERROR; }
            else if (put(o, esc, 6) < 0) return ERROR;
            run = ++i;
            continue;
        }
        Py_ssize_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) k = 2;
        else if (c >= 0xE0 && c <= 0xEF) { k = 3; if (c == 0xE0) lo = 0xA0; else if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 4; if (c == 0xF0) lo = 0x90; else if (c == 0xF4) hi = 0x8F; }
        else return BAIL;
        if (i + k > n || s[i + 1] < lo || s[i + 1] > hi) return BAIL;
        for (Py_ssize_t j = 2; j < k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return BAIL;
        i += k;
    }
    if (put(o, (const char *)s + run, i - run) < 0) return ERROR;
    return put(o, "\"", 1);
}

/* A BSON string value at p (int32 length with the trailing NUL, then the bytes); *size gets the
 * bytes it takes. BAIL when malformed. */
static int bson_string(const uint8_t *p, Py_ssize_t avail, const uint8_t **text, Py_ssize_t *n,
                       Py_ssize_t *size) {
    if (avail < 5) return BAIL;
    int32_t len = le32(p);
    if (len < 1 || len > avail - 4 || p[4 + len - 1] != 0) return BAIL;
    *text = p + 4;
    *n = len - 1;
    *size = 4 + len;
    return 0;
}

static int put_base64(out_t *o, const uint8_t *s, Py_ssize_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    RESERVE(o, (n + 2) / 3 * 4);
    char *d = o->buf + o->len;
    Py_ssize_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *d++ = tab[v >> 18]; *d++ = tab[(v >> 12) & 63]; *d++ = tab[(v >> 6) & 63]; *d++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *d++ = tab[v >> 18]; *d++ = tab[(v >> 12) & 63];
        *d++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *d++ = '=';
    }
    o->len = d - o->buf;
    return 0;
}

/* A finite double as Python's repr() writes it (json_util's relaxed number and canonical text). */
static int put_double_repr(out_t *o, double value) {
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!text) return ERROR;
    int rc = put(o, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return rc;
}

static int put_double(out_t *o, double value) {
    if (isnan(value)) return PUT_LIT(o, "{\"$numberDouble\":\"NaN\"}");
    if (isinf(value))
        return value > 0 ? PUT_LIT(o, "{\"$numberDouble\":\"Infinity\"}")
                         : PUT_LIT(o, "{\"$numberDouble\":\"-Infinity\"}");
    if (!o->canonical) return put_double_repr(o, value);
    if (PUT_LIT(o, "{\"$numberDouble\":\"") < 0 || put_double_repr(o, value) < 0) return ERROR;
    return PUT_LIT(o, "\"}");
}

/* Days since 1970-01-01 -> civil date (proleptic Gregorian; H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

#define MAX_ISO_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */

static int put_date(out_t *o, int64_t ms) {
    if (o->canonical || ms < 0 || ms > MAX_ISO_MS) {
        if (PUT_LIT(o, "{\"$date\":{\"$numberLong\":\"") < 0 || put_int(o, ms) < 0) return ERROR;
        return PUT_LIT(o, "\"}}");
    }
    int64_t days = ms / 86400000, rest = ms % 86400000, year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    unsigned secs = (unsigned)(rest / 1000), millis = (unsigned)(rest % 1000);
    char text[48];
    int n = millis
        ? snprintf(text, sizeof(text), "{\"$date\":\"%04d-%02u-%02uT%02u:%02u:%02u.%03uZ\"}", (int)year, month, day,
                   secs / 3600, secs / 60 % 60, secs % 60, millis)
        : snprintf(text, sizeof(text), "{\"$date\":\"%04d-%02u-%02uT%02u:%02u:%02uZ\"}", (int)year, month, day,
                   secs / 3600, secs / 60 % 60, secs % 60);
    return put(o, text, n);
}

/* str(Decimal128) for finite values with a coefficient below 10**34 (IEEE 754-2008 BID and the
 * General Decimal Arithmetic to-scientific-string rules); BAIL for the rest. */
static int put_decimal128(out_t *o, const uint8_t *p) {
    uint64_t low = le64u(p), high = le64u(p + 8);
    if (((high >> 61) & 3) == 3) return BAIL;
    unsigned __int128 coefficient = ((unsigned __int128)(high & UINT64_C(0x1FFFFFFFFFFFF)) << 64) | low;
    unsigned __int128 limit = (unsigned __int128)UINT64_C(10000000000000000) * UINT64_C(1000000000000000000);
    if (coefficient >= limit) return BAIL; /* 10**34 */
    int exponent = (int)((high >> 49) & 0x3FFF) - 6176;
    char digits[40];
    int nd = 0;
    char rev[40];
    do { rev[nd++] = (char)('0' + (int)(coefficient % 10)); coefficient /= 10; } while (coefficient);
    for (int i = 0; i < nd; i++) digits[i] = rev[nd - 1 - i];
    int adjusted = exponent + nd - 1;
    char text[96];
    int n = 0;
    if (high >> 63) text[n++] = '-';
    if (exponent <= 0 && adjusted >= -6) {
        int point = nd + exponent;
        if (exponent == 0) {
            memcpy(text + n, digits, nd); n += nd;
        } else if (point > 0) {
            memcpy(text + n, digits, point); n += point;
            text[n++] = '.';
            memcpy(text + n, digits + point, nd - point); n += nd - point;
        } else {
            text[n++] = '0'; text[n++] = '.';
            for (int i = 0; i < -point; i++) text[n++] = '0';
            memcpy(text + n, digits, nd); n += nd;
        }
    } else {
        text[n++] = digits[0];
        if (nd > 1) {
            text[n++] = '.';
            memcpy(text + n, digits + 1, nd - 1); n += nd - 1;
        }
        n += snprintf(text + n, sizeof(text) - n, "E%+d", adjusted);
    }
    if (PUT_LIT(o, "{\"$numberDecimal\":\"") < 0 || put(o, text, n) < 0) return ERROR;
    return PUT_LIT(o, "\"}");
}

static int put_document(out_t *o, const uint8_t *p, Py_ssize_t avail, int is_array, int depth,
                        Py_ssize_t *size, const int64_t *seq);

/* The value of type `type` at p; *size gets the bytes it takes. */
static int put_value(out_t *o, uint8_t type, const uint8_t *p, Py_ssize_t avail, int depth, Py_ssize_t *size) {
    const uint8_t *text;
    Py_ssize_t n;
    int rc;
    switch (type) {
    case 0x01: /* double */
        if (avail < 8) return BAIL;
        *size = 8;
        {
            uint64_t bits = le64u(p);
            double value;
            memcpy(&value, &bits, 8);
            return put_double(o, value);
        }
    case 0x02: /* string */
        if ((rc = bson_string(p, avail, &text, &n, size))) return rc;
        return put_string(o, text, n);
    case 0x03: /* document */
        return put_document(o, p, avail, 0, depth + 1, size, NULL);
    case 0x04: /* array */
        return put_document(o, p, avail, 1, depth + 1, size, NULL);
    case 0x05: { /* binary */
        if (avail < 5) return BAIL;
        int32_t len = le32(p);
        uint8_t subtype = p[4];
        if (len < 0 || len > avail - 5) return BAIL;
        const uint8_t *data = p + 5;
        Py_ssize_t dlen = len;
        if (subtype == 2) { /* the old binary subtype carries its length again */
            if (len < 4 || le32(data) != len - 4) return BAIL;
            data += 4;
            dlen -= 4;
        }
        *size = 5 + (Py_ssize_t)len;
        static const char hex[] = "0123456789abcdef";
        char tail[] = "\",\"subType\":\"00\"}}";
        tail[sizeof(tail) - 6] = hex[subtype >> 4];
        tail[sizeof(tail) - 5] = hex[subtype & 15];
        if (PUT_LIT(o, "{\"$binary\":{\"base64\":\"") < 0 || put_base64(o, data, dlen) < 0) return ERROR;
        return put(o, tail, (Py_ssize_t)sizeof(tail) - 1);
    }
    case 0x07: { /* ObjectId */
        static const char hex[] = "0123456789abcdef";
        if (avail < 12) return BAIL;
        *size = 12;
        char text_[] = "{\"$oid\":\"000000000000000000000000\"}";
        for (int i = 0; i < 12; i++) {
            text_[9 + 2 * i] = hex[p[i] >> 4];
            text_[10 + 2 * i] = hex[p[i] & 15];
        }
        return put(o, text_, (Py_ssize_t)sizeof(text_) - 1);
    }
    case 0x08: /* bool */
        if (avail < 1 || p[0] > 1) return BAIL;
        *size = 1;
        return p[0] ? PUT_LIT(o, "true") : PUT_LIT(o, "false");
    case 0x09: /* UTC datetime */
        if (avail < 8) return BAIL;
        *size = 8;
        return put_date(o, (int64_t)le64u(p));
    case 0x0A: /* null */
        *size = 0;
        return PUT_LIT(o, "null");
    case 0x0B: { /* regex: pattern and options, as pymongo's Regex keeps them (flags i l m s u x) */
        const uint8_t *end = memchr(p, 0, avail);
        if (!end) return BAIL;
        const uint8_t *opts = end + 1;
        const uint8_t *opts_end = memchr(opts, 0, avail - (opts - p));
        if (!opts_end) return BAIL;
        *size = opts_end + 1 - p;
        char flags[7];
        int nf = 0;
        static const char order[] = "ilmsux";
        for (int i = 0; i < 6; i++)
            if (memchr(opts, order[i], opts_end - opts)) flags[nf++] = order[i];
        if (PUT_LIT(o, "{\"$regularExpression\":{\"pattern\":") < 0) return ERROR;
        if ((rc = put_string(o, p, end - p))) return rc;
        if (PUT_LIT(o, ",\"options\":\"") < 0 || put(o, flags, nf) < 0) return ERROR;
        return PUT_LIT(o, "\"}}");
    }
    case 0x0D: /* JavaScript code */
        if ((rc = bson_string(p, avail, &text, &n, size))) return rc;
        if (PUT_LIT(o, "{\"$code\":") < 0) return ERROR;
        if ((rc = put_string(o, text, n))) return rc;
        return put(o, "}", 1);
    case 0x0F: { /* code with scope: int32 total, string, document */
        Py_ssize_t ssize, dsize;
        if (avail < 4) return BAIL;
        int32_t total = le32(p);
        if (total < 14 || total > avail) return BAIL;
        if ((rc = bson_string(p + 4, total - 4, &text, &n, &ssize))) return rc;
        if (PUT_LIT(o, "{\"$code\":") < 0) return ERROR;
        if ((rc = put_string(o, text, n))) return rc;
        if (PUT_LIT(o, ",\"$scope\":") < 0) return ERROR;
        if ((rc = put_document(o, p + 4 + ssize, total - 4 - ssize, 0, depth + 1, &dsize, NULL))) return rc;
        if (4 + ssize + dsize != total) return BAIL;
        *size = total;
        return put(o, "}", 1);
    }
    case 0x10: /* int32 */
        if (avail < 4) return BAIL;
        *size = 4;
        if (!o->canonical) return put_int(o, le32(p));
        if (PUT_LIT(o, "{\"$numberInt\":\"") < 0 || put_int(o, le32(p)) < 0) return ERROR;
        return PUT_LIT(o, "\"}");
    case 0x11: /* timestamp: increment, then time */
        if (avail < 8) return BAIL;
        *size = 8;
        if (PUT_LIT(o, "{\"$timestamp\":{\"t\":") < 0 || put_int(o, (uint32_t)le32(p + 4)) < 0) return ERROR;
        if (PUT_LIT(o, ",\"i\":") < 0 || put_int(o, (uint32_t)le32(p)) < 0) return ERROR;
        return PUT_LIT(o, "}}");
    case 0x12: /* int64 */
        if (avail < 8) return BAIL;
        *size = 8;
        if (!o->canonical) return put_int(o, (int64_t)le64u(p));
        if (PUT_LIT(o, "{\"$numberLong\":\"") < 0 || put_int(o, (int64_t)le64u(p)) < 0) return ERROR;
        return PUT_LIT(o, "\"}");
    case 0x13: /* Decimal128 */
        if (avail < 16) return BAIL;
        *size = 16;
        return put_decimal128(o, p);
    case 0x7F:
        *size = 0;
        return PUT_LIT(o, "{\"$maxKey\":1}");
    case 0xFF:
        *size = 0;
        return PUT_LIT(o, "{\"$minKey\":1}");
    default: /* undefined, DBPointer, symbol (deprecated) and unknown types: json_util writes them */
        return BAIL;
    }
}

/* A document or array at p; with seq, `"_seq": seq` is written as its last field. */
static int put_document(out_t *o, const uint8_t *p, Py_ssize_t avail, int is_array, int depth,
                        Py_ssize_t *size, const int64_t *seq) {
    if (depth > MAX_DEPTH || avail < 5) return BAIL;
    int32_t len = le32(p);
    if (len < 5 || len > avail || p[len - 1] != 0) return BAIL;
    const uint8_t *q = p + 4, *end = p + len - 1;
    int first = 1, rc;
    if (put(o, is_array ? "[" : "{", 1) < 0) return ERROR;
    while (q < end) {
        uint8_t type = *q++;
        const uint8_t *key_end = memchr(q, 0, end - q);
        if (!key_end) return BAIL;
        if (!first && put(o, ",", 1) < 0) return ERROR;
        first = 0;
        if (!is_array) {
            if ((rc = put_string(o, q, key_end - q))) return rc;
            if (put(o, ":", 1) < 0) return ERROR;
        }
        q = key_end + 1;
        Py_ssize_t vsize = 0;
        if ((rc = put_value(o, type, q, end - q, depth, &vsize))) return rc;
        q += vsize;
    }
    if (q != end) return BAIL;
    if (seq) {
        if (!first && put(o, ",", 1) < 0) return ERROR;
        if (o->canonical) {
            if (PUT_LIT(o, "\"_seq\":{\"$numberLong\":\"") < 0 || put_int(o, *seq) < 0) return ERROR;
            if (PUT_LIT(o, "\"}") < 0) return ERROR;
        } else if (PUT_LIT(o, "\"_seq\":") < 0 || put_int(o, *seq) < 0) {
            return ERROR;
        }
    }
    *size = len;
    return put(o, is_array ? "]" : "}", 1);
}

static PyObject *encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "encode(raw, seq, canonical)");
        return NULL;
    }
    long long seq = PyLong_AsLongLong(args[1]);
    if (seq == -1 && PyErr_Occurred()) return NULL;
    int canonical = PyObject_IsTrue(args[2]);
    if (canonical < 0) return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    out_t o;
    o.cap = view.len * 2 + 256;
    o.len = 0;
    o.canonical = canonical;
    o.bytes = PyBytes_FromStringAndSize(NULL, o.cap);
    if (!o.bytes) {
        PyBuffer_Release(&view);
        return NULL;
    }
    o.buf = PyBytes_AS_STRING(o.bytes);
    int64_t seq64 = (int64_t)seq;
    Py_ssize_t size = 0;
    int rc = put_document(&o, (const uint8_t *)view.buf, view.len, 0, 0, &size, &seq64);
    if (rc == 0 && size != view.len) rc = BAIL;
    if (rc == 0) rc = put(&o, "\n", 1);
    PyBuffer_Release(&view);
    if (rc != 0) {
        Py_XDECREF(o.bytes);
        if (rc == ERROR) return NULL;
        Py_RETURN_NONE;
    }
    if (_PyBytes_Resize(&o.bytes, o.len) < 0) return NULL;
    return o.bytes;
}

/* The size of a value of BSON type `type` at p (avail bytes left), or -1 when it does not fit. */
static Py_ssize_t value_size(uint8_t type, const uint8_t *p, Py_ssize_t avail) {
    Py_ssize_t n;
    switch (type) {
    case 0x01: case 0x09: case 0x11: case 0x12: n = 8; break;
    case 0x02: case 0x0D: case 0x0E:
        if (avail < 4) return -1;
        n = 4 + (Py_ssize_t)le32(p);
        if (n < 5) return -1;
        break;
    case 0x03: case 0x04: case 0x0F:
        if (avail < 4) return -1;
        n = le32(p);
        if (n < 5) return -1;
        break;
    case 0x05:
        if (avail < 5) return -1;
        n = 5 + (Py_ssize_t)le32(p);
        if (n < 5) return -1;
        break;
    case 0x06: case 0x0A: case 0x7F: case 0xFF: n = 0; break;
    case 0x07: n = 12; break;
    case 0x08: n = 1; break;
    case 0x0B: {
        const uint8_t *end = memchr(p, 0, avail);
        if (!end) return -1;
        const uint8_t *end2 = memchr(end + 1, 0, avail - (end + 1 - p));
        if (!end2) return -1;
        n = end2 + 1 - p;
        break;
    }
    case 0x0C:
        if (avail < 4) return -1;
        n = 4 + (Py_ssize_t)le32(p) + 12;
        if (n < 17) return -1;
        break;
    case 0x10: n = 4; break;
    case 0x13: n = 16; break;
    default: return -1;
    }
    return n <= avail ? n : -1;
}

typedef struct {
    const char *name;
    uint8_t type;      /* the BSON type wanted */
    const uint8_t *at; /* where its value starts, NULL if absent */
    Py_ssize_t size;
    int wrong;         /* present with another type */
} want_t;

/* Finds the wanted top-level fields of the document at p (len bytes; the last of equal keys wins).
 * Returns 0, or -1 when the document is malformed. */
static int scan(const uint8_t *p, Py_ssize_t len, want_t *wants, int count) {
    if (len < 5 || le32(p) != len || p[len - 1] != 0) return -1;
    Py_ssize_t pos = 4;
    while (pos < len - 1) {
        uint8_t type = p[pos++];
        const uint8_t *name = p + pos;
        const uint8_t *end = memchr(name, 0, len - pos);
        if (!end) return -1;
        pos = end + 1 - p;
        Py_ssize_t size = value_size(type, p + pos, len - 1 - pos);
        if (size < 0) return -1;
        for (int i = 0; i < count; i++) {
            if (strcmp((const char *)name, wants[i].name) == 0) {
                wants[i].wrong = type != wants[i].type;
                wants[i].at = wants[i].wrong ? NULL : p + pos;
                wants[i].size = size;
            }
        }
        pos += size;
    }
    return pos == len - 1 ? 0 : -1;
}

static PyObject *utf8(const want_t *w) {
    /* a BSON string: int32 length (with the NUL), bytes, NUL */
    if (!w->at) Py_RETURN_NONE;
    Py_ssize_t n = (Py_ssize_t)le32(w->at) - 1;
    if (n < 0 || 4 + n + 1 != w->size || w->at[4 + n] != 0) return NULL;
    return PyUnicode_DecodeUTF8((const char *)w->at + 4, n, NULL);
}

static PyObject *fields(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL, *op = NULL, *key = NULL, *db = NULL, *coll = NULL;
    want_t top[] = {{"operationType", 0x02}, {"clusterTime", 0x11}, {"_id", 0x03}, {"ns", 0x03}};
    want_t id[] = {{"_data", 0x02}};
    want_t ns[] = {{"db", 0x02}, {"coll", 0x02}};
    if (scan(view.buf, view.len, top, 4) < 0 || !top[1].at || !top[2].at || top[0].wrong || top[3].wrong)
        goto other;
    if (scan(top[2].at, top[2].size, id, 1) < 0 || !id[0].at) goto other;
    if (top[3].at && (scan(top[3].at, top[3].size, ns, 2) < 0 || ns[0].wrong || ns[1].wrong)) goto other;
    if (!(op = utf8(&top[0])) || !(key = utf8(&id[0]))) goto other;
    if (!(db = utf8(&ns[0])) || !(coll = utf8(&ns[1]))) goto other;
    {
        uint32_t increment = (uint32_t)le32(top[1].at), seconds = (uint32_t)le32(top[1].at + 4);
        result = Py_BuildValue("(OIIOOO)", op, seconds, increment, key, db, coll);
    }
    goto done;
other: /* malformed, or a field of another type or not valid UTF-8: the caller reads the event */
    PyErr_Clear();
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(op);
    Py_XDECREF(key);
    Py_XDECREF(db);
    Py_XDECREF(coll);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encode, METH_FASTCALL,
     "encode(raw, seq, canonical) -> bytes | None: the Extended JSON line of a BSON document with "
     "_seq appended, or None when bson.json_util must write it."},
    {"fields", (PyCFunction)fields, METH_O,
     "fields(raw) -> (operationType, seconds, increment, _id._data, ns.db, ns.coll) | None: what a run "
     "routes a change event by, or None for an event of another shape."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bronze_extjson", NULL, 0, methods};

PyMODINIT_FUNC PyInit__bronze_extjson(void) { return PyModule_Create(&module); }
