/* Configuration: JSON files (cJSON) checked against one schema, plus key=value
 * overrides. The schema is the one place that decides each key's type, default, range
 * and documentation; every layer contributes a table of keys (see config.c). */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    FL_KEY_NUM = 0,   /* double */
    FL_KEY_INT,       /* integer (JSON number without fraction) */
    FL_KEY_BOOL,
    FL_KEY_STR,       /* string; choices restrict it when given */
    FL_KEY_NUM_LIST,  /* array of numbers */
    FL_KEY_INT_LIST,
    FL_KEY_STR_LIST,
    FL_KEY_KIND_COUNT
} fl_key_kind;

typedef struct {
    const char *key;     /* dotted path, e.g. "train.lr" */
    fl_key_kind kind;
    const char *def;     /* default as JSON text: "2e-4", "true", "\"nf\"", "[0, 1, 10]" */
    double min, max;     /* inclusive bounds on numbers (each element of a list); ignored
                            when min > max */
    const char *choices; /* strings: allowed values "a|b|c", or NULL for any */
    const char *doc;     /* one or two sentences for the documentation */
} fl_key;
#define FL_NO_BOUNDS 1, 0
#define FL_KEYS_END {NULL, 0, NULL, 0, 0, NULL, NULL}

typedef struct fl_config fl_config;

fl_config *fl_config_default(void);                 /* every key at its default */
/* Reads a JSON file over the defaults. NULL and fl_error() naming the file and the
 * key on an unknown key, an ill-typed or out-of-range value, or malformed JSON; naming
 * the file when it is not a regular file or larger than FL_CONFIG_MAX_BYTES. */
#define FL_CONFIG_MAX_BYTES (16 << 20)
fl_config *fl_config_load(const char *path);
/* The same from JSON text; origin names it in messages. */
fl_config *fl_config_parse(const char *text, const char *origin);
/* Applies "dotted.key=value"; value is read as JSON when the whole of it parses as JSON,
 * else as a string; lists may be written 0,1,10 without brackets, each entry read whole.
 * -1 and a message naming the key ("5abc" is not an integer, "1 2" not a list). */
int fl_config_override(fl_config *c, const char *assignment);
fl_config *fl_config_copy(const fl_config *c);
void fl_config_free(fl_config *c);

double fl_cfg_num(const fl_config *c, const char *key);
int64_t fl_cfg_int(const fl_config *c, const char *key);
bool fl_cfg_bool(const fl_config *c, const char *key);
const char *fl_cfg_str(const fl_config *c, const char *key);   /* borrowed */
int fl_cfg_len(const fl_config *c, const char *key);           /* list length */
double fl_cfg_list_num(const fl_config *c, const char *key, int i);
const char *fl_cfg_list_str(const fl_config *c, const char *key, int i);

/* Setters with the same checks as overrides (for sweeps: one run's family, λ, seed). */
int fl_cfg_set_num(fl_config *c, const char *key, double v);
int fl_cfg_set_str(fl_config *c, const char *key, const char *v);

/* Canonical JSON of the sections named (e.g. {"data", "subject"}; n = 0: all), keys
 * in schema order: equal text means equal settings. Caller frees. */
char *fl_config_json(const fl_config *c, const char *const *sections, int n);
/* FNV-1a 64 of fl_config_json, as 16 hex digits into buf[17]. */
void fl_config_hash(const fl_config *c, const char *const *sections, int n, char buf[17]);

/* What a key decides, for the identity of trained models and of their scores:
 *   MODEL  it changes the trained parameters (data, subject, VAE, family, training, seed);
 *   EVAL   it changes only the scores of a trained model (eval.*);
 *   NONE   neither (threads, folders, which runs a sweep has).
 * core/schema.c classifies every key; UNSET is a key nobody classified (a test fails). */
typedef enum { FL_ROLE_UNSET = 0, FL_ROLE_MODEL, FL_ROLE_EVAL, FL_ROLE_NONE, FL_ROLE_COUNT } fl_key_role;
fl_key_role fl_config_role(const char *key);
/* Canonical JSON / hash of every key of one role: the model key and the evaluation key. */
char *fl_config_json_role(const fl_config *c, fl_key_role role);
void fl_config_hash_role(const fl_config *c, fl_key_role role, char buf[17]);

/* Tables of keys added at run time (a family registered by a test or a plug-in): they
 * join the schema with the role given, after the built-in tables. Call before the first
 * config is made. -1 and a message when a key exists already or the table is full. */
int fl_config_add_section(const fl_key *table, fl_key_role role);
/* Adds value to the choices of the string (or string-list) key. -1 when full. */
int fl_config_add_choice(const char *key, const char *value);
/* The choices of key, the built-in and the added ones, "a|b|c" (static storage); NULL
 * when the key takes any string. */
const char *fl_config_choices(const char *key);

/* Every key of the schema in documentation order, NULL-terminated (static storage). */
int fl_config_key_count(void);
const fl_key *fl_config_key_at(int i);

/* Markdown documentation of every key (configs/README.md is generated from it). */
void fl_config_write_doc(FILE *f);
/* The schema entry of key, or NULL. */
const fl_key *fl_config_key(const char *key);

#endif
