/* The config schema, one table of keys per layer, in documentation order. A layer that
 * adds keys defines its table next to its code and lists it here. */
#ifndef FL_SCHEMA_H
#define FL_SCHEMA_H

#include "core/config.h"

extern const fl_key fl_keys_general[];   /* core/schema.c */
extern const fl_key fl_keys_data[];      /* datasets/data_keys.c */
extern const fl_key fl_keys_train[];     /* trainers/loop.c */
extern const fl_key fl_keys_model[];     /* trainers/family.c */
extern const fl_key fl_keys_nf[];        /* trainers/nf.c */
extern const fl_key fl_keys_subject[];   /* trainers/subject.c */
extern const fl_key fl_keys_vae[];       /* trainers/vae.c */
extern const fl_key fl_keys_eval[];      /* benchmarks/eval.c */
extern const fl_key fl_keys_sweep[];     /* benchmarks/sweep.c */

#define FL_SCHEMA_SECTIONS fl_keys_general, fl_keys_data, fl_keys_train, fl_keys_model, fl_keys_nf, \
    fl_keys_subject, fl_keys_vae, fl_keys_eval, fl_keys_sweep

#endif
