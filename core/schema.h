/* The config schema, one table of keys per layer, in documentation order. A layer that
 * adds keys defines its table next to its code and lists it here. */
#ifndef FL_SCHEMA_H
#define FL_SCHEMA_H

#include "core/config.h"
#include "trainers/families.h"

extern const fl_key fl_keys_general[];   /* core/schema.c */
extern const fl_key fl_keys_data[];      /* datasets/data_keys.c */
extern const fl_key fl_keys_train[];     /* trainers/loop.c */
extern const fl_key fl_keys_fiber[];     /* trainers/fiber.c: train.* of fiber models */
extern const fl_key fl_keys_model[];     /* trainers/family.c */
/* each built-in family's own section, fl_keys_<name>[] in trainers/<name>.c */
#define FL_SCHEMA_FAMILY_DECL(id, summary) extern const fl_key fl_keys_##id[];
FL_FAMILIES(FL_SCHEMA_FAMILY_DECL)
#define FL_SCHEMA_FAMILY_TABLE(id, summary) fl_keys_##id,
extern const fl_key fl_keys_subject[];   /* trainers/subject.c */
extern const fl_key fl_keys_vae[];       /* trainers/vae.c */
extern const fl_key fl_keys_prior[];     /* trainers/prior.c */
extern const fl_key fl_keys_ndtm[];      /* ndtm/ndtm.c */
extern const fl_key fl_keys_eval[];      /* benchmarks/eval.c */
extern const fl_key fl_keys_sweep[];     /* benchmarks/sweep.c */

#define FL_SCHEMA_SECTIONS fl_keys_general, fl_keys_data, fl_keys_train, fl_keys_fiber, fl_keys_model, \
    FL_FAMILIES(FL_SCHEMA_FAMILY_TABLE) fl_keys_subject, fl_keys_vae, fl_keys_prior, fl_keys_ndtm, fl_keys_eval, fl_keys_sweep

/* The role of a built-in key (core/schema.c): FL_ROLE_UNSET when none is given. */
fl_key_role fl_schema_role(const char *key);

/* Checks beyond a key's kind, range and choices (core/schema.c), applied to files,
 * overrides and setters alike. */
/* The number of entries a list key must have (data.fixed_color: 3); 0: any. */
int fl_schema_list_len(const char *key);
/* What a string key without choices must look like: FOLDER, any non-empty path
 * (out_dir, cache_dir); NAME, one plain component that stays inside its parent
 * (sweep.name: not empty, ".", ".." or with '/'); DEVICE, a device as ctorch reads it
 * (device: "cpu", "cuda" or "cuda:N"). */
typedef enum { FL_STR_ANY = 0, FL_STR_FOLDER, FL_STR_NAME, FL_STR_DEVICE } fl_str_form;
fl_str_form fl_schema_str_form(const char *key);

#endif
