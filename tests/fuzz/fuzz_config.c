/* The config file and the key=value overrides: the bytes up to the first NUL are the
 * JSON text, each further NUL-separated piece one override, applied to the parsed
 * config and to the defaults. */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "ctorch/ct.h"
#include "tests/fuzz/fuzz.h"

int fuzz_config(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    size_t json_len = strlen(text);
    fl_config *c = fl_config_parse(text, "fuzz.json");
    /* the defaults, built (and checked against the schema) once: fl_config_parse above
     * builds them again on every input, so their checks still run each time */
    static fl_config *defaults;
    if (!defaults) defaults = fl_config_default();
    fl_config *d = fl_config_copy(defaults);
    for (size_t at = json_len + 1; at <= size; at += strlen(text + at) + 1) {
        if (c) fl_config_override(c, text + at);
        if (d) fl_config_override(d, text + at);
    }
    if (c) free(fl_config_json(c, NULL, 0));
    fl_config_free(c);
    fl_config_free(d);
    ct_clear_error();
    free(text);
    return 0;
}
