/* The config store: a cJSON tree holding every schema key, filled from the defaults
 * and then from the user's file and overrides, each value checked on the way in. */
#include "core/config.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/schema.h"
#include "ctorch/ct.h"

struct fl_config {
    cJSON *root;
};

/* The schema: one table per layer (core/schema.h), in documentation order, then the
 * tables added at run time (fl_config_add_section). */
#define MAX_ADDED 32
static const fl_key *added[MAX_ADDED];
static fl_key_role added_role[MAX_ADDED];
static int n_added;

static const fl_key *const *sections(void)
{
    static const fl_key *const builtin[] = {FL_SCHEMA_SECTIONS};
    enum { N_BUILTIN = sizeof builtin / sizeof builtin[0] };
    static const fl_key *all[N_BUILTIN + MAX_ADDED + 1];
    static int filled = -1;
    if (filled != n_added) {
        memcpy(all, builtin, sizeof builtin);
        for (int i = 0; i < n_added; i++) all[N_BUILTIN + i] = added[i];
        all[N_BUILTIN + n_added] = NULL;
        filled = n_added;
    }
    return all;
}

int fl_config_add_section(const fl_key *table, fl_key_role role)
{
    if (n_added == MAX_ADDED) return fl_fail("config: more than %d added key tables", MAX_ADDED);
    for (const fl_key *k = table; k->key; k++)
        if (fl_config_key(k->key)) return fl_fail("config: key '%s' exists already", k->key);
    added_role[n_added] = role;
    added[n_added++] = table;
    return 0;
}

/* Choices added at run time, per key: the built-in "a|b" grows to "a|b|c". */
#define MAX_CHOICE_KEYS 8
static struct {
    char key[64];
    char choices[512];
} extra_choices[MAX_CHOICE_KEYS];

int fl_config_add_choice(const char *key, const char *value)
{
    const fl_key *k = fl_config_key(key);
    if (!k || (k->kind != FL_KEY_STR && k->kind != FL_KEY_STR_LIST) || !k->choices)
        return fl_fail("config: '%s' is not a key with choices", key);
    for (int i = 0; i < MAX_CHOICE_KEYS; i++) {
        if (extra_choices[i].key[0] && strcmp(extra_choices[i].key, key) != 0) continue;
        if (!extra_choices[i].key[0]) {
            snprintf(extra_choices[i].key, sizeof extra_choices[i].key, "%s", key);
            snprintf(extra_choices[i].choices, sizeof extra_choices[i].choices, "%s", k->choices);
        }
        size_t len = strlen(extra_choices[i].choices);
        if (len + strlen(value) + 2 > sizeof extra_choices[i].choices)
            return fl_fail("config: too many choices for '%s'", key);
        snprintf(extra_choices[i].choices + len, sizeof extra_choices[i].choices - len, "|%s", value);
        return 0;
    }
    return fl_fail("config: choices added to more than %d keys", MAX_CHOICE_KEYS);
}

static const char *choices_of(const fl_key *k)
{
    for (int i = 0; i < MAX_CHOICE_KEYS && extra_choices[i].key[0]; i++)
        if (strcmp(extra_choices[i].key, k->key) == 0) return extra_choices[i].choices;
    return k->choices;
}

const char *fl_config_choices(const char *key)
{
    const fl_key *k = fl_config_key(key);
    return k ? choices_of(k) : NULL;
}

int fl_config_key_count(void)
{
    int n = 0;
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++) n++;
    return n;
}

const fl_key *fl_config_key_at(int i)
{
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++)
            if (i-- == 0) return k;
    return NULL;
}

fl_key_role fl_config_role(const char *key)
{
    for (int i = 0; i < n_added; i++)
        for (const fl_key *k = added[i]; k->key; k++)
            if (strcmp(k->key, key) == 0) return added_role[i];
    return fl_schema_role(key);
}

const fl_key *fl_config_key(const char *key)
{
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++)
            if (strcmp(k->key, key) == 0) return k;
    return NULL;
}

/* Is prefix a proper section prefix of some key ("train" of "train.lr")? */
static bool is_group(const char *prefix)
{
    size_t n = strlen(prefix);
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++)
            if (strncmp(k->key, prefix, n) == 0 && k->key[n] == '.') return true;
    return false;
}

static const char *kind_name(fl_key_kind k)
{
    static const char *names[] = {"a number", "an integer", "true or false", "a string",
                                  "a list of numbers", "a list of integers", "a list of strings"};
    return k < FL_KEY_KIND_COUNT ? names[k] : "?";
}

static bool is_int(double v) { return isfinite(v) && v == floor(v) && fabs(v) < 9.007e15; }

/* The string keys of a form (core/schema.c): a folder path must not be empty (it would
 * be the file-system root or the working directory, depending on who joins it), a
 * folder name must be one plain component, so that it stays inside its parent, and a
 * device must be one ctorch reads (whether it is there is the command's to check). */
static int check_form(const fl_key *k, const char *s, const char *o)
{
    ct_device d;
    switch (fl_schema_str_form(k->key)) {
    case FL_STR_DEVICE:
        if (ct_device_parse(s, &d) != CT_OK)
            return fl_fail("%s: key '%s' must be cpu, cuda or cuda:N, got '%s'", o, k->key, s);
        return 0;
    case FL_STR_FOLDER:
        if (!s[0]) return fl_fail("%s: key '%s' must name a folder, got an empty string", o, k->key);
        return 0;
    case FL_STR_NAME:
        if (!s[0] || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strchr(s, '/'))
            return fl_fail("%s: key '%s' must be a plain folder name (not empty, '.', '..' "
                           "or with '/'), got '%s'", o, k->key, s);
        return 0;
    default: return 0;
    }
}

/* Checks v against k; on failure sets a message with origin (a file or "override"). */
static int check_value(const fl_key *k, const cJSON *v, const char *origin)
{
    const char *o = origin ? origin : "config";
    bool list = k->kind == FL_KEY_NUM_LIST || k->kind == FL_KEY_INT_LIST ||
                k->kind == FL_KEY_STR_LIST;
    if (list && !cJSON_IsArray(v))
        return fl_fail("%s: key '%s' must be %s", o, k->key, kind_name(k->kind));
    if (list && fl_schema_list_len(k->key) && cJSON_GetArraySize(v) != fl_schema_list_len(k->key))
        return fl_fail("%s: key '%s' must have %d entries, got %d", o, k->key,
                       fl_schema_list_len(k->key), cJSON_GetArraySize(v));
    /* walked by ->next: cJSON_GetArrayItem(v, i) is a walk from the head each time,
     * which made a long list quadratic */
    for (const cJSON *e = list ? v->child : v; e; e = list ? e->next : NULL) {
        switch (k->kind) {
        case FL_KEY_NUM:
        case FL_KEY_INT:
        case FL_KEY_NUM_LIST:
        case FL_KEY_INT_LIST: {
            bool want_int = k->kind == FL_KEY_INT || k->kind == FL_KEY_INT_LIST;
            if (!cJSON_IsNumber(e) || (want_int && !is_int(e->valuedouble)) ||
                !isfinite(e->valuedouble))
                return fl_fail("%s: key '%s' must be %s", o, k->key, kind_name(k->kind));
            double x = e->valuedouble;
            if (k->min <= k->max && (x < k->min || x > k->max))
                return fl_fail("%s: key '%s' must be in [%g, %g], got %g", o, k->key, k->min,
                               k->max, x);
            break;
        }
        case FL_KEY_BOOL:
            if (!cJSON_IsBool(e))
                return fl_fail("%s: key '%s' must be %s", o, k->key, kind_name(k->kind));
            break;
        case FL_KEY_STR:
        case FL_KEY_STR_LIST:
            if (!cJSON_IsString(e))
                return fl_fail("%s: key '%s' must be %s", o, k->key, kind_name(k->kind));
            if (check_form(k, e->valuestring, o)) return -1;
            if (choices_of(k)) {
                const char *s = e->valuestring;
                size_t len = strlen(s);
                bool ok = false;
                for (const char *p = choices_of(k); *p;) {
                    const char *bar = strchr(p, '|');
                    size_t m = bar ? (size_t)(bar - p) : strlen(p);
                    if (m == len && strncmp(p, s, m) == 0) ok = true;
                    p += m + (bar ? 1 : 0);
                }
                if (!ok)
                    return fl_fail("%s: key '%s' must be one of %s, got '%s'", o, k->key,
                                   choices_of(k), s);
            }
            break;
        default: assert(!"bad key kind");
        }
    }
    return 0;
}

/* Replaces (creating groups as needed) the value at dotted key; takes ownership of v. */
static void put(cJSON *root, const char *key, cJSON *v)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", key);
    cJSON *node = root;
    char *part = buf;
    for (char *dot; (dot = strchr(part, '.')); part = dot + 1) {
        *dot = 0;
        cJSON *child = cJSON_GetObjectItemCaseSensitive(node, part);
        if (!child) {
            child = cJSON_CreateObject();
            cJSON_AddItemToObject(node, part, child);
        }
        node = child;
    }
    if (cJSON_GetObjectItemCaseSensitive(node, part))
        cJSON_ReplaceItemInObjectCaseSensitive(node, part, v);
    else
        cJSON_AddItemToObject(node, part, v);
}

static const cJSON *get(const fl_config *c, const char *key)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", key);
    const cJSON *node = c->root;
    char *part = buf;
    for (char *dot; (dot = strchr(part, '.')); part = dot + 1) {
        *dot = 0;
        node = cJSON_GetObjectItemCaseSensitive(node, part);
    }
    return node ? cJSON_GetObjectItemCaseSensitive(node, part) : NULL;
}

fl_config *fl_config_default(void)
{
    fl_config *c = calloc(1, sizeof *c);
    c->root = cJSON_CreateObject();
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++) {
            cJSON *v = cJSON_Parse(k->def);
            /* a bad default is a programmer error */
            if (!v || check_value(k, v, "schema default")) {
                fprintf(stderr, "%s:%d: bad default for '%s': %s\n", __FILE__, __LINE__,
                        k->key, fl_error());
                abort();
            }
            put(c->root, k->key, v);
        }
    return c;
}

void fl_config_free(fl_config *c)
{
    if (!c) return;
    cJSON_Delete(c->root);
    free(c);
}

fl_config *fl_config_copy(const fl_config *c)
{
    fl_config *d = calloc(1, sizeof *d);
    d->root = cJSON_Duplicate(c->root, true);
    return d;
}

/* Walks a user's tree, checking and copying each leaf into c. */
static int merge(fl_config *c, const cJSON *node, const char *prefix, const char *origin)
{
    for (const cJSON *it = node->child; it; it = it->next) {
        char key[256];
        if (prefix[0])
            snprintf(key, sizeof key, "%s.%s", prefix, it->string);
        else
            snprintf(key, sizeof key, "%s", it->string);
        const fl_key *k = fl_config_key(key);
        if (k) {
            if (check_value(k, it, origin)) return -1;
            put(c->root, key, cJSON_Duplicate(it, true));
        } else if (cJSON_IsObject(it) && is_group(key)) {
            if (merge(c, it, key, origin)) return -1;
        } else {
            return fl_fail("%s: unknown key '%s'", origin, key);
        }
    }
    return 0;
}

fl_config *fl_config_load(const char *path)
{
    /* stat before open: opening a FIFO would wait for a writer, and /dev/zero never ends */
    struct stat st;
    if (stat(path, &st) != 0) return fl_fail("%s: cannot open: %s", path, strerror(errno)), NULL;
    if (!S_ISREG(st.st_mode)) return fl_fail("%s: not a regular file", path), NULL;
    if (st.st_size > FL_CONFIG_MAX_BYTES)
        return fl_fail("%s: %lld bytes, more than a config file may have (%d MiB)", path,
                       (long long)st.st_size, FL_CONFIG_MAX_BYTES >> 20), NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return fl_fail("%s: cannot open: %s", path, strerror(errno)), NULL;
    char *text = malloc((size_t)st.st_size + 1);
    if (!text) {
        fclose(f);
        return fl_fail("%s: out of memory", path), NULL;
    }
    /* one byte more than stat said, to see a file that grew meanwhile */
    size_t len = fread(text, 1, (size_t)st.st_size + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || len > (size_t)st.st_size) {
        free(text);
        return fl_fail("%s: %s", path, bad ? "read error" : "changed while being read"), NULL;
    }
    if (len == 0) {
        free(text);
        return fl_fail("%s: empty file", path), NULL;
    }
    text[len] = 0;
    if (strlen(text) != len) {
        free(text);
        return fl_fail("%s: a NUL byte in a JSON file", path), NULL;
    }
    fl_config *c = fl_config_parse(text, path);
    free(text);
    return c;
}

fl_config *fl_config_parse(const char *text, const char *origin)
{
    const char *end = NULL;
    size_t len = strlen(text);
    cJSON *user = cJSON_ParseWithOpts(text, &end, true);
    if (!user) {
        size_t off = end ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < off && i < len; i++) line += text[i] == '\n';
        return fl_fail("%s: malformed JSON near line %d", origin, line), NULL;
    }
    if (!cJSON_IsObject(user)) {
        cJSON_Delete(user);
        return fl_fail("%s: the top level must be a JSON object", origin), NULL;
    }
    fl_config *c = fl_config_default();
    if (merge(c, user, "", origin)) {
        cJSON_Delete(user);
        fl_config_free(c);
        return NULL;
    }
    cJSON_Delete(user);
    return c;
}

/* JSON text that is one value and nothing else: cJSON_Parse alone stops after the
 * first value, so that "5abc" would be 5 and "1,2" would be 1. */
static cJSON *parse_whole(const char *text)
{
    const char *end = NULL;
    return cJSON_ParseWithOpts(text, &end, true);
}

/* A value of k from its command-line text: JSON when the whole text is JSON, else a
 * string (which check_value refuses for a non-string key); a list may also be written
 * 0,1,10 without brackets, each entry read whole. NULL when out of memory. */
static cJSON *parse_value(const fl_key *k, const char *text)
{
    cJSON *v = parse_whole(text);
    bool list = k->kind == FL_KEY_NUM_LIST || k->kind == FL_KEY_INT_LIST ||
                k->kind == FL_KEY_STR_LIST;
    if (v && (!list || cJSON_IsArray(v))) {
        if (k->kind == FL_KEY_STR && !cJSON_IsString(v)) {
            cJSON_Delete(v); /* a bare word like 1e-3 for a string key stays a string */
            return cJSON_CreateString(text);
        }
        return v;
    }
    cJSON_Delete(v);
    if (!list) return cJSON_CreateString(text);
    cJSON *arr = cJSON_CreateArray();
    char *buf = strdup(text);
    if (!arr || !buf) {
        cJSON_Delete(arr);
        free(buf);
        return NULL;
    }
    /* every comma separates two entries: "1,,2" has an empty one, which is refused */
    for (char *tok = buf, *comma;; tok = comma + 1) {
        comma = strchr(tok, ',');
        if (comma) *comma = 0;
        while (isspace((unsigned char)*tok)) tok++;
        cJSON *e = k->kind == FL_KEY_STR_LIST ? NULL : parse_whole(tok);
        cJSON_AddItemToArray(arr, e ? e : cJSON_CreateString(tok));
        if (!comma) break;
    }
    free(buf);
    return arr;
}

int fl_config_override(fl_config *c, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return fl_fail("override '%s': expected key=value", assignment);
    char key[256];
    if ((size_t)(eq - assignment) >= sizeof key)
        return fl_fail("override: unknown key '%.64s...'", assignment);
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    const fl_key *k = fl_config_key(key);
    if (!k) return fl_fail("override: unknown key '%s'", key);
    cJSON *v = parse_value(k, eq + 1);
    if (!v) return fl_fail("override: key '%s': out of memory", key);
    if (check_value(k, v, "override")) {
        cJSON_Delete(v);
        return -1;
    }
    put(c->root, key, v);
    return 0;
}

static const cJSON *must_get(const fl_config *c, const char *key, fl_key_kind kind)
{
    const fl_key *k = fl_config_key(key);
    if (!k || k->kind != kind) {
        fprintf(stderr, "%s:%d: config key '%s' is not in the schema as %s\n", __FILE__,
                __LINE__, key, kind_name(kind));
        abort();
    }
    return get(c, key);
}

double fl_cfg_num(const fl_config *c, const char *key)
{
    return must_get(c, key, FL_KEY_NUM)->valuedouble;
}
int64_t fl_cfg_int(const fl_config *c, const char *key)
{
    return (int64_t)must_get(c, key, FL_KEY_INT)->valuedouble;
}
bool fl_cfg_bool(const fl_config *c, const char *key)
{
    return cJSON_IsTrue(must_get(c, key, FL_KEY_BOOL));
}
const char *fl_cfg_str(const fl_config *c, const char *key)
{
    return must_get(c, key, FL_KEY_STR)->valuestring;
}

static const cJSON *list_get(const fl_config *c, const char *key)
{
    const fl_key *k = fl_config_key(key);
    if (!k || (k->kind != FL_KEY_NUM_LIST && k->kind != FL_KEY_INT_LIST &&
               k->kind != FL_KEY_STR_LIST)) {
        fprintf(stderr, "%s:%d: config key '%s' is not a list in the schema\n", __FILE__,
                __LINE__, key);
        abort();
    }
    return get(c, key);
}
int fl_cfg_len(const fl_config *c, const char *key)
{
    return cJSON_GetArraySize(list_get(c, key));
}
double fl_cfg_list_num(const fl_config *c, const char *key, int i)
{
    const cJSON *e = cJSON_GetArrayItem(list_get(c, key), i);
    assert(e && cJSON_IsNumber(e));
    return e->valuedouble;
}
const char *fl_cfg_list_str(const fl_config *c, const char *key, int i)
{
    const cJSON *e = cJSON_GetArrayItem(list_get(c, key), i);
    assert(e && cJSON_IsString(e));
    return e->valuestring;
}

int fl_cfg_set_num(fl_config *c, const char *key, double v)
{
    const fl_key *k = fl_config_key(key);
    if (!k) return fl_fail("unknown key '%s'", key);
    cJSON *j = cJSON_CreateNumber(v);
    if (check_value(k, j, "setting")) {
        cJSON_Delete(j);
        return -1;
    }
    put(c->root, key, j);
    return 0;
}

int fl_cfg_set_str(fl_config *c, const char *key, const char *v)
{
    const fl_key *k = fl_config_key(key);
    if (!k) return fl_fail("unknown key '%s'", key);
    cJSON *j = cJSON_CreateString(v);
    if (check_value(k, j, "setting")) {
        cJSON_Delete(j);
        return -1;
    }
    put(c->root, key, j);
    return 0;
}

static bool in_sections(const char *key, const char *const *secs, int n)
{
    if (n == 0) return true;
    for (int i = 0; i < n; i++) {
        size_t m = strlen(secs[i]);
        if (strncmp(key, secs[i], m) == 0 && (key[m] == '.' || key[m] == 0)) return true;
    }
    return false;
}

char *fl_config_json(const fl_config *c, const char *const *secs, int n)
{
    cJSON *out = cJSON_CreateObject();
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++)
            if (in_sections(k->key, secs, n)) put(out, k->key, cJSON_Duplicate(get(c, k->key), true));
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    return text;
}

static void hash_text(char *text, char buf[17])
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    free(text);
    snprintf(buf, 17, "%016llx", (unsigned long long)h);
}

void fl_config_hash(const fl_config *c, const char *const *secs, int n, char buf[17])
{
    hash_text(fl_config_json(c, secs, n), buf);
}

char *fl_config_json_role(const fl_config *c, fl_key_role role)
{
    cJSON *out = cJSON_CreateObject();
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++)
            if (fl_config_role(k->key) == role) put(out, k->key, cJSON_Duplicate(get(c, k->key), true));
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    return text;
}

void fl_config_hash_role(const fl_config *c, fl_key_role role, char buf[17])
{
    hash_text(fl_config_json_role(c, role), buf);
}

void fl_config_write_doc(FILE *f)
{
    fprintf(f, "# Configuration keys\n\n"
               "Generated by `fiberlab config --doc`; do not edit by hand. A config file is a\n"
               "JSON object whose nesting follows the dots (`{\"train\": {\"lr\": 2e-4}}` sets\n"
               "`train.lr`); every key not given keeps its default. A config file is a regular\n"
               "file of at most 16 MiB. On the command line, `key=value` overrides any key\n"
               "(lists as `0,1,10`); the whole value must parse (`5abc` is not an integer).\n");
    char last[64] = "";
    for (const fl_key *const *s = sections(); *s; s++)
        for (const fl_key *k = *s; k->key; k++) {
            const char *dot = strchr(k->key, '.');
            char sec[64];
            snprintf(sec, sizeof sec, "%.*s", dot ? (int)(dot - k->key) : 7,
                     dot ? k->key : "general");
            if (strcmp(sec, last) != 0) {
                fprintf(f, "\n## %s\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
                        sec);
                snprintf(last, sizeof last, "%s", sec);
            }
            char range[160] = "";
            if (k->min <= k->max) snprintf(range, sizeof range, " in [%g, %g]", k->min, k->max);
            if (choices_of(k)) {
                /* '|' would split the markdown table */
                char ch[128];
                size_t j = 0;
                for (const char *p = choices_of(k); *p && j + 3 < sizeof ch; p++) {
                    if (*p == '|') {
                        ch[j++] = ',';
                        ch[j++] = ' ';
                    } else {
                        ch[j++] = *p;
                    }
                }
                ch[j] = 0;
                snprintf(range, sizeof range, ": %s", ch);
            }
            fprintf(f, "| `%s` | %s%s | `%s` | %s |\n", k->key, kind_name(k->kind), range,
                    k->def, k->doc);
        }
}
