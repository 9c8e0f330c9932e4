/* The config schema, one table of keys per layer, in documentation order. A layer that
 * adds keys defines its table next to its code and lists it here. */
#ifndef FL_SCHEMA_H
#define FL_SCHEMA_H

#include "core/config.h"

extern const fl_key fl_keys_general[];   /* core/schema.c */

#define FL_SCHEMA_SECTIONS fl_keys_general

#endif
