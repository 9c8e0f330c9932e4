/* HDF5 helpers: atomic writers and checked readers. */
#include "core/h5.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/log.h"

struct fl_h5w {
    hid_t f;
    char path[4096], mem_name[4300];   /* mem_name: the core driver's name of the file */
};
struct fl_h5r {
    hid_t f;
    double file_size;   /* bytes: what a dataset's declared size is checked against */
    char path[4096];
};

static void quiet_hdf5(void)
{
    static int done;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

size_t fl_type_size(fl_type t)
{
    static const size_t sz[] = {4, 8, 8, 4, 1};
    return t < FL_TYPE_COUNT ? sz[t] : 0;
}

static hid_t mem_type(fl_type t)
{
    switch (t) {
    case FL_F32: return H5T_NATIVE_FLOAT;
    case FL_F64: return H5T_NATIVE_DOUBLE;
    case FL_I64: return H5T_NATIVE_INT64;
    case FL_I32: return H5T_NATIVE_INT32;
    case FL_U8: return H5T_NATIVE_UINT8;
    default: return H5I_INVALID_HID;
    }
}

fl_h5w *fl_h5w_create(const char *path)
{
    quiet_hdf5();
    fl_h5w *w = calloc(1, sizeof *w);
    if (!w) return fl_fail("out of memory"), NULL;
    snprintf(w->path, sizeof w->path, "%s", path);
    /* built in memory (HDF5's core driver, no backing store) and written out whole at
     * commit: HDF5 never writes to the disk itself, so a full disk is one failed write
     * with its errno, not a failed H5Fclose that HDF5 retries (and crashes in) at exit */
    static unsigned serial;
    snprintf(w->mem_name, sizeof w->mem_name, "fl_h5w:%ld:%u:%s", (long)getpid(), serial++, path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    w->f = fapl < 0 || H5Pset_fapl_core(fapl, 8 << 20, false) < 0
               ? -1
               : H5Fcreate(w->mem_name, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (w->f < 0) {
        fl_fail("%s: cannot create HDF5 file", path);
        free(w);
        return NULL;
    }
    return w;
}

/* Creates the groups on the way to name ("a/b/c" -> a, a/b). */
static int make_parents(hid_t f, const char *name)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (H5Lexists(f, buf, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(f, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) return -1;
            H5Gclose(g);
        }
        *p = '/';
    }
    return 0;
}

int fl_h5w_write(fl_h5w *w, const char *name, fl_type t, int ndim, const int64_t *dims,
                 const void *data)
{
    hsize_t d[8];
    hsize_t numel = 1;
    if (ndim < 0 || ndim > 8) return fl_fail("%s: dataset '%s' has %d dims", w->path, name, ndim);
    for (int i = 0; i < ndim; i++) {
        d[i] = (hsize_t)dims[i];
        numel *= d[i];
    }
    if (make_parents(w->f, name) < 0) return fl_fail("%s: cannot create groups for '%s'", w->path, name);
    hid_t space = H5Screate_simple(ndim, d, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (ndim > 0 && numel * fl_type_size(t) >= (1u << 16)) {
        /* chunk along the first dim, about 1 MiB per chunk */
        hsize_t chunk[8];
        hsize_t row = numel / (d[0] ? d[0] : 1) * fl_type_size(t);
        for (int i = 0; i < ndim; i++) chunk[i] = d[i] ? d[i] : 1;
        hsize_t rows = row ? (1u << 20) / row : 1;
        chunk[0] = rows < 1 ? 1 : (rows > d[0] ? d[0] : rows);
        if (chunk[0] == 0) chunk[0] = 1;
        H5Pset_chunk(dcpl, ndim, chunk);
        H5Pset_deflate(dcpl, 4);
    }
    hid_t ds = H5Dcreate2(w->f, name, mem_type(t), space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : H5Dwrite(ds, mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (st < 0) return fl_fail("%s: cannot write dataset '%s'", w->path, name);
    return 0;
}

static int write_attr(hid_t f, const char *path, const char *obj, const char *name, hid_t type,
                      const void *value)
{
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0) return fl_fail("%s: no object '%s' for attribute '%s'", path, obj, name);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Oclose(o);
    if (st < 0) return fl_fail("%s: cannot write attribute '%s' on '%s'", path, name, obj);
    return 0;
}

int fl_h5w_attr_str(fl_h5w *w, const char *obj, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_cset(type, H5T_CSET_UTF8);
    int rc = write_attr(w->f, w->path, obj, name, type, value);
    H5Tclose(type);
    return rc;
}

int fl_h5w_attr_f64(fl_h5w *w, const char *obj, const char *name, double value)
{
    return write_attr(w->f, w->path, obj, name, H5T_NATIVE_DOUBLE, &value);
}

int fl_h5w_attr_i64(fl_h5w *w, const char *obj, const char *name, int64_t value)
{
    return write_attr(w->f, w->path, obj, name, H5T_NATIVE_INT64, &value);
}

int fl_h5w_commit(fl_h5w *w)
{
    int rc = 0;
    void *image = NULL;
    ssize_t n = H5Fflush(w->f, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(w->f, NULL, 0);
    if (n <= 0 || !(image = malloc((size_t)n)) || H5Fget_file_image(w->f, image, (size_t)n) != n)
        rc = fl_fail("%s: cannot build the HDF5 file in memory%s", w->path, n > 0 && !image ? ": out of memory" : "");
    if (H5Fclose(w->f) < 0 && !rc) rc = fl_fail("%s: cannot close HDF5 file", w->path);
    if (!rc) rc = fl_write_bytes_atomic(w->path, image, (size_t)n);
    free(image);
    free(w);
    return rc;
}

void fl_h5w_abort(fl_h5w *w)
{
    if (!w) return;
    H5Fclose(w->f);
    free(w);
}

fl_h5r *fl_h5r_open(const char *path)
{
    quiet_hdf5();
    if (access(path, R_OK) != 0) return fl_fail("%s: cannot open: %s", path, strerror(errno)), NULL;
    if (H5Fis_hdf5(path) <= 0) return fl_fail("%s: not an HDF5 file", path), NULL;
    fl_h5r *r = calloc(1, sizeof *r);
    if (!r) return fl_fail("out of memory"), NULL;
    snprintf(r->path, sizeof r->path, "%s", path);
    struct stat st;
    r->file_size = stat(path, &st) == 0 ? (double)st.st_size : 0;
    r->f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->f < 0) {
        fl_fail("%s: cannot open HDF5 file", path);
        free(r);
        return NULL;
    }
    return r;
}

void fl_h5r_close(fl_h5r *r)
{
    if (!r) return;
    H5Fclose(r->f);
    free(r);
}

const char *fl_h5r_path(const fl_h5r *r) { return r->path; }

bool fl_h5r_has(fl_h5r *r, const char *name)
{
    /* H5Lexists fails on a missing intermediate group: check each level */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (H5Lexists(r->f, buf, H5P_DEFAULT) <= 0) return false;
            if (!c) return true;
            *p = c;
        }
    }
}

bool fl_h5r_is_integer(fl_h5r *r, const char *name)
{
    hid_t ds = fl_h5r_has(r, name) ? H5Dopen2(r->f, name, H5P_DEFAULT) : -1;
    if (ds < 0) return false;
    hid_t t = H5Dget_type(ds);
    bool is = t >= 0 && H5Tget_class(t) == H5T_INTEGER;
    if (t >= 0) H5Tclose(t);
    H5Dclose(ds);
    return is;
}

int fl_h5r_dims(fl_h5r *r, const char *name, int *ndim, int64_t dims[8])
{
    if (!fl_h5r_has(r, name)) return fl_fail("%s: no dataset '%s'", r->path, name);
    hid_t ds = H5Dopen2(r->f, name, H5P_DEFAULT);
    if (ds < 0) return fl_fail("%s: '%s' is not a dataset", r->path, name);
    hid_t sp = H5Dget_space(ds);
    int n = H5Sget_simple_extent_ndims(sp);
    hsize_t d[32];
    int rc = 0;
    if (n < 0 || n > 8)
        rc = fl_fail("%s: dataset '%s' has an unsupported rank", r->path, name);
    else {
        H5Sget_simple_extent_dims(sp, d, NULL);
        *ndim = n;
        for (int i = 0; i < n; i++) dims[i] = (int64_t)d[i];
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

/* Whether a stored type is a number HDF5 converts safely: an element of at most 8 bytes
 * (a corrupt file can declare a 1 GiB one, which HDF5 would allocate for the
 * conversion) in a standard layout — an integer whose bits fill its bytes, or an IEEE
 * float of 4 or 8 bytes. A corrupt header can declare other bit fields (a precision or
 * offset past the element), which HDF5 1.10's converters do not bound: converting such
 * an integer to float wrote past a stack variable in H5T__bit_get_d
 * (tests/fuzz/crashes/samples/integer_bits_past_its_bytes). NULL when it is one, else
 * what is wrong (for a message). */
static const char *not_a_number_type(hid_t ft)
{
    H5T_class_t c = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    size_t sz = ft >= 0 ? H5Tget_size(ft) : 0;
    if (c != H5T_INTEGER && c != H5T_FLOAT) return "not stored as numbers";
    if (sz == 0 || sz > 8) return "stored as numbers of more than 8 bytes";
    if (c == H5T_INTEGER)
        return H5Tget_precision(ft) == 8 * sz && H5Tget_offset(ft) == 0
                   ? NULL : "stored as integers whose bits do not fill their bytes";
    return H5Tequal(ft, H5T_IEEE_F32LE) > 0 || H5Tequal(ft, H5T_IEEE_F32BE) > 0 ||
                   H5Tequal(ft, H5T_IEEE_F64LE) > 0 || H5Tequal(ft, H5T_IEEE_F64BE) > 0
               ? NULL : "stored as floats of a layout other than IEEE single or double";
}

/* Whether the dataset can be read as numbers without trusting its header further: a
 * number type HDF5 converts safely (above), and no more elements than the file can
 * hold compressed (deflate, the filter our writers use, shrinks at most 1032:1). */
static int check_stored(fl_h5r *r, const char *name, hid_t ds, int nd, const int64_t *d)
{
    hid_t ft = H5Dget_type(ds);
    const char *bad = not_a_number_type(ft);
    size_t sz = ft >= 0 ? H5Tget_size(ft) : 0;
    if (ft >= 0) H5Tclose(ft);
    if (bad) return fl_fail("%s: dataset '%s' is %s", r->path, name, bad);
    /* the storage HDF5 reads the dataset from (a chunk's compressed bytes, which it
     * allocates whole) lies in the file: a corrupt chunk index can claim gigabytes
     * (tests/fuzz/crashes/dataset/gray_chunk_claims_3.4GB) */
    double stored = (double)H5Dget_storage_size(ds);
    if (stored > r->file_size)
        return fl_fail("%s: dataset '%s' claims %.0f bytes of storage, more than the file's %.0f "
                       "bytes", r->path, name, stored, r->file_size);
    double bytes = (double)sz;
    for (int i = 0; i < nd; i++) bytes *= d[i] < 0 ? 1e300 : (double)d[i];   /* over 2^63 */
    if (bytes > 1032.0 * r->file_size + (1 << 20))
        return fl_fail("%s: dataset '%s' declares %.0f bytes, more than the file's %.0f bytes "
                       "can hold", r->path, name, bytes, r->file_size);
    return 0;
}

int fl_h5r_check_numeric(fl_h5r *r, const char *name)
{
    int nd;
    int64_t d[8];
    if (fl_h5r_dims(r, name, &nd, d)) return -1;
    hid_t ds = H5Dopen2(r->f, name, H5P_DEFAULT);
    if (ds < 0) return fl_fail("%s: '%s' is not a dataset", r->path, name);
    int rc = check_stored(r, name, ds, nd, d);
    H5Dclose(ds);
    return rc;
}

int fl_h5r_read(fl_h5r *r, const char *name, fl_type t, void *buf, size_t nbytes)
{
    int nd;
    int64_t d[8];
    if (fl_h5r_dims(r, name, &nd, d)) return -1;
    hid_t ds = H5Dopen2(r->f, name, H5P_DEFAULT);
    if (ds < 0) return fl_fail("%s: '%s' is not a dataset", r->path, name);
    if (check_stored(r, name, ds, nd, d)) {
        H5Dclose(ds);
        return -1;
    }
    size_t numel = 1;   /* no overflow: check_stored bounded it by the file's size */
    for (int i = 0; i < nd; i++) numel *= (size_t)d[i];
    if (numel * fl_type_size(t) != nbytes) {
        H5Dclose(ds);
        return fl_fail("%s: dataset '%s' has %zu elements, expected %zu", r->path, name, numel,
                       nbytes / fl_type_size(t));
    }
    herr_t st = H5Dread(ds, mem_type(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(ds);
    if (st < 0) return fl_fail("%s: cannot read dataset '%s' as %s", r->path, name,
                               t == FL_F32 || t == FL_F64 ? "numbers" : "integers");
    return 0;
}

void *fl_h5r_read_alloc(fl_h5r *r, const char *name, fl_type t, int64_t *numel)
{
    int nd;
    int64_t d[8];
    if (fl_h5r_dims(r, name, &nd, d) || fl_h5r_check_numeric(r, name)) return NULL;
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= d[i];
    void *buf = malloc(n ? (size_t)n * fl_type_size(t) : 1);
    if (!buf) return fl_fail("%s: out of memory reading '%s'", r->path, name), NULL;
    if (fl_h5r_read(r, name, t, buf, (size_t)n * fl_type_size(t))) {
        free(buf);
        return NULL;
    }
    if (numel) *numel = n;
    return buf;
}

static int read_attr(fl_h5r *r, const char *obj, const char *name, hid_t type, void *value)
{
    if (!fl_h5r_has(r, obj) && strcmp(obj, "/") != 0)
        return fl_fail("%s: no object '%s'", r->path, obj);
    hid_t o = H5Oopen(r->f, obj, H5P_DEFAULT);
    if (o < 0) return fl_fail("%s: no object '%s'", r->path, obj);
    if (H5Aexists(o, name) <= 0) {
        H5Oclose(o);
        return fl_fail("%s: no attribute '%s' on '%s'", r->path, name, obj);
    }
    /* H5Aread writes every element of the attribute: one number, or it writes past
     * `value` (tests/fuzz/crashes/dataset/seed_attribute_of_1000_numbers) */
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1, ft = a >= 0 ? H5Aget_type(a) : -1;
    hssize_t count = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    const char *bad = not_a_number_type(ft);
    herr_t st = a >= 0 && count == 1 && !bad ? H5Aread(a, type, value) : -1;
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    H5Oclose(o);
    if (a >= 0 && count != 1)
        return fl_fail("%s: attribute '%s' on '%s' holds %lld values, expected one number", r->path,
                       name, obj, (long long)count);
    if (a >= 0 && bad) return fl_fail("%s: attribute '%s' on '%s' is %s", r->path, name, obj, bad);
    if (st < 0) return fl_fail("%s: cannot read attribute '%s' on '%s'", r->path, name, obj);
    return 0;
}

int fl_h5r_attr_str(fl_h5r *r, const char *obj, const char *name, char *buf, size_t n)
{
    if (!fl_h5r_has(r, obj) && strcmp(obj, "/") != 0)
        return fl_fail("%s: no object '%s'", r->path, obj);
    hid_t o = H5Oopen(r->f, obj, H5P_DEFAULT);
    if (o < 0) return fl_fail("%s: no object '%s'", r->path, obj);
    if (H5Aexists(o, name) <= 0) {
        H5Oclose(o);
        return fl_fail("%s: no attribute '%s' on '%s'", r->path, name, obj);
    }
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t count = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    int rc = 0;
    /* H5Aread writes every element: one string, or it writes past the one pointer or
     * buffer below (tests/fuzz/crashes/dataset/format_attribute_of_1000_strings*); and
     * a fixed length no larger than the file that stores it */
    if (a < 0 || ft < 0)
        rc = fl_fail("%s: cannot read attribute '%s' on '%s'", r->path, name, obj);
    else if (count != 1)
        rc = fl_fail("%s: attribute '%s' on '%s' holds %lld values, expected one string", r->path,
                     name, obj, (long long)count);
    else if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) <= 0 &&
             (double)H5Tget_size(ft) > r->file_size)
        rc = fl_fail("%s: attribute '%s' on '%s' declares a string of %zu bytes, more than the "
                     "file's %.0f bytes", r->path, name, obj, H5Tget_size(ft), r->file_size);
    else if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
        /* variable-length strings (h5py's default) */
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        if (H5Tget_class(ft) == H5T_STRING) H5Tset_cset(mt, H5Tget_cset(ft));
        char *s = NULL;
        if (H5Tget_class(ft) != H5T_STRING || H5Aread(a, mt, &s) < 0)
            rc = fl_fail("%s: attribute '%s' on '%s' is not a string", r->path, name, obj);
        else {
            snprintf(buf, n, "%s", s ? s : "");
            H5free_memory(s);
        }
        H5Tclose(mt);
    } else {
        size_t sz = H5Tget_size(ft);
        char *tmp = calloc(1, sz + 1);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        H5Tset_cset(mt, H5Tget_cset(ft)); /* UTF-8 (as written) and ASCII do not convert */
        if (!tmp || H5Aread(a, mt, tmp) < 0)
            rc = fl_fail("%s: cannot read attribute '%s' on '%s'", r->path, name, obj);
        else
            snprintf(buf, n, "%s", tmp);
        H5Tclose(mt);
        free(tmp);
    }
    if (ft >= 0) H5Tclose(ft);
    if (a >= 0) H5Aclose(a);
    H5Oclose(o);
    return rc;
}

int fl_h5r_attr_f64(fl_h5r *r, const char *obj, const char *name, double *value)
{
    return read_attr(r, obj, name, H5T_NATIVE_DOUBLE, value);
}

int fl_h5r_attr_i64(fl_h5r *r, const char *obj, const char *name, int64_t *value)
{
    return read_attr(r, obj, name, H5T_NATIVE_INT64, value);
}
