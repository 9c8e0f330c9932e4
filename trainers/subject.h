/* Subject models (DESIGN.md §2) behind one interface: a colored image batch
 * x (B, 3, 28, 28) in [0, 1] -> a representation z (B, d). Kinds:
 *   decolorize_ae  z = E(decolorize(x)), E the encoder of a conv autoencoder trained on
 *                  the gray digits until it is effectively lossless (the paper's);
 *   classifier     z = the logits (d = 10) of a conv digit classifier;
 *   torchscript    z = any TorchScript module (B, 3, 28, 28) -> (B, d) from a file
 *                  (subject.path), called with float32 images in [0, 1].
 * With subject.input = color the two built-in networks see the colored image instead
 * of its decolorized gray (a subject whose fiber is not known in closed form).
 * Trained subjects live in <cache_dir>/models/subject-<kind>-<key>.ckpt (the cached-model
 * lifecycle of trainers/model_cache.h: the key covers data.*, subject.* and the train.*
 * keys its training reads; subject.seed is its own seed) and are reused from there. */
#ifndef FL_SUBJECT_H
#define FL_SUBJECT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "ctorch/ct.h"
#include "datasets/store.h"

typedef enum {
    FL_SUBJECT_DECOLORIZE_AE = 0,
    FL_SUBJECT_CLASSIFIER,
    FL_SUBJECT_TORCHSCRIPT,
    FL_SUBJECT_CUSTOM,          /* a C function (fl_subject_custom), for tests and tools */
    FL_SUBJECT_KIND_COUNT
} fl_subject_kind;
#define FL_SUBJECT_KINDS "decolorize_ae|classifier|torchscript"
const char *fl_subject_kind_name(fl_subject_kind k);

/* What training measured, stored with the subject (NAN where it does not apply). All
 * errors are on the test split. */
typedef struct {
    bool trained;            /* trained by this open (else loaded from the cache) */
    int64_t steps;           /* optimizer steps of its training */
    double train_seconds;
    double recon_rmse;       /* autoencoder: RMS pixel error of its reconstructions */
    double recon_fiber;      /* autoencoder: fiber loss between E(x) and E(D(E(x))): how far
                                an image's representation moves when the image is
                                replaced by its reconstruction */
    double other_fiber;      /* fiber loss between a test image and a random test image
                                of another class: the scale fiber losses are read on */
    double accuracy;         /* classifier: test accuracy in [0, 1] */
} fl_subject_report;

typedef struct fl_subject fl_subject;

/* The subject of a config: loaded from the cache, trained into it (atomically, with
 * fl_train_run; an interrupted training resumes from <path>.train) when missing, or
 * loaded from subject.path. Its parameters are frozen. *out is new (fl_subject_free);
 * -1 and a message ("subject.path: FILE: what", …) on failure. */
int fl_subject_open(const fl_config *c, const fl_dataset *ds, fl_subject **out);
/* The representation size of the subject of c as far as the settings tell: subject.dim
 * or 10; 0 for torchscript (known once loaded); -1 on an unknown kind. */
int fl_subject_config_dim(const fl_config *c);
/* Where the trained subject of c is (or would be) cached; for torchscript the file. */
int fl_subject_cache_path(const fl_config *c, char *buf, size_t n);
/* A subject made of a C function z = fn(ctx, x) of dimension dim (x (B, 3, 28, 28) ->
 * (B, dim), following ctorch's ownership rules); free_ctx (may be NULL) is called on
 * ctx by fl_subject_free. */
fl_subject *fl_subject_custom(const char *name, int dim,
                              ct_tensor *(*fn)(void *ctx, const ct_tensor *x), void *ctx,
                              void (*free_ctx)(void *ctx));
void fl_subject_free(fl_subject *s);   /* NULL is a no-op */

/* x (B, 3, 28, 28) colored images in [0, 1] -> z (B, d); differentiable with respect
 * to x (the subject's own parameters are frozen). NULL and ct_last_error(). */
ct_tensor *fl_subject_forward(fl_subject *s, const ct_tensor *x);
/* The same for a large set, in batches of `batch` with grad off: (N, 3, 28, 28) -> (N, d). */
ct_tensor *fl_subject_forward_all(fl_subject *s, const ct_tensor *x, int64_t batch);
int fl_subject_dim(const fl_subject *s);
fl_subject_kind fl_subject_kind_of(const fl_subject *s);
/* Whether the subject's fiber is known in closed form as the recolorings of the digit
 * (DESIGN.md §5): decolorize_ae on the gray image, or a custom subject declared so.
 * A classifier (whose fiber is every image of a class), a TorchScript module and
 * subject.input = color are not. */
bool fl_subject_recoloring_fiber(const fl_subject *s);
void fl_subject_declare_recoloring_fiber(fl_subject *s);
const char *fl_subject_name(const fl_subject *s);   /* "decolorize_ae", …, or the custom name */
const char *fl_subject_path(const fl_subject *s);   /* checkpoint or script; "" for custom */
const fl_subject_report *fl_subject_report_of(const fl_subject *s);
/* The autoencoder's decoder: z (B, d) -> its gray (or colored, with subject.input =
 * color) reconstruction (B, 1|3, 28, 28) in [0, 1]; NULL and an error for other kinds. */
ct_tensor *fl_subject_decode(fl_subject *s, const ct_tensor *z);

extern const fl_key fl_keys_subject[];

#endif
