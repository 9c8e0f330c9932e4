/* HDF5 files written atomically and read with errors that name the file and dataset.
 * A writer builds the file in memory; commit writes it to "<path>.tmp.<pid>" and renames
 * that over path (fl_write_bytes_atomic), so an interrupted run or a full disk never
 * leaves a half file; abort drops it. */
#ifndef FL_H5_H
#define FL_H5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { FL_F32 = 0, FL_F64, FL_I64, FL_I32, FL_U8, FL_TYPE_COUNT } fl_type;
size_t fl_type_size(fl_type t);

typedef struct fl_h5w fl_h5w;
fl_h5w *fl_h5w_create(const char *path);    /* NULL + fl_error() on failure */
/* Writes an n-D dataset (gzip-compressed when large); groups in name ("a/b/c") are
 * created as needed. */
int fl_h5w_write(fl_h5w *w, const char *name, fl_type t, int ndim, const int64_t *dims,
                 const void *data);
/* Attributes on "/" or on an existing group or dataset. */
int fl_h5w_attr_str(fl_h5w *w, const char *obj, const char *name, const char *value);
int fl_h5w_attr_f64(fl_h5w *w, const char *obj, const char *name, double value);
int fl_h5w_attr_i64(fl_h5w *w, const char *obj, const char *name, int64_t value);
int fl_h5w_commit(fl_h5w *w);   /* closes, renames, frees; -1 leaves nothing behind */
void fl_h5w_abort(fl_h5w *w);   /* closes, deletes the temp file, frees; NULL no-op */

typedef struct fl_h5r fl_h5r;
fl_h5r *fl_h5r_open(const char *path);     /* NULL + "PATH: not an HDF5 file" etc. */
void fl_h5r_close(fl_h5r *r);
const char *fl_h5r_path(const fl_h5r *r);
bool fl_h5r_has(fl_h5r *r, const char *name);      /* dataset or group */
/* Shape of a dataset; error "PATH: no dataset 'name'" when absent. */
int fl_h5r_dims(fl_h5r *r, const char *name, int *ndim, int64_t dims[8]);
/* Whether the dataset is stored as integers (reads convert silently: 0.7 would be 0). */
bool fl_h5r_is_integer(fl_h5r *r, const char *name);
/* Whether a dataset can be read as numbers: stored as numbers of at most 8 bytes, and
 * no larger than the file can hold; "PATH: dataset 'name' ..." otherwise. Call it
 * before allocating from its dims (fl_h5r_read and _read_alloc check it themselves). */
int fl_h5r_check_numeric(fl_h5r *r, const char *name);
/* Reads a whole dataset converted to type t; nbytes must equal numel * size. */
int fl_h5r_read(fl_h5r *r, const char *name, fl_type t, void *buf, size_t nbytes);
/* Reads a whole dataset into a new malloc'd buffer (caller frees); *numel set. */
void *fl_h5r_read_alloc(fl_h5r *r, const char *name, fl_type t, int64_t *numel);
int fl_h5r_attr_str(fl_h5r *r, const char *obj, const char *name, char *buf, size_t n);
int fl_h5r_attr_f64(fl_h5r *r, const char *obj, const char *name, double *value);
int fl_h5r_attr_i64(fl_h5r *r, const char *obj, const char *name, int64_t *value);

#endif
