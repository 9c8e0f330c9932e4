/* fiberlab config: the settings a config file resolves to, and the documentation of
 * every key (configs/README.md is its output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "core/config.h"
#include "core/log.h"

int cmd_config(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("usage: fiberlab config [--config FILE] [key=value ...]\n"
               "       fiberlab config --doc\n"
               "\n"
               "Prints the complete settings (every key, defaults filled in) that FILE and the\n"
               "overrides resolve to, as JSON, after checking them: an unknown key, a value of\n"
               "the wrong type or out of range is an error naming the key. --doc prints the\n"
               "documentation of every key as Markdown (configs/README.md).\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--doc") == 0) {
        fl_config_write_doc(stdout);
        return 0;
    }
    cli_opts o;
    if (cli_opts_parse("config", argc, argv, &o, NULL, NULL)) return 1;
    if (o.out) return cli_fail("config", "--out is not an option of config");
    fl_config *c = cli_opts_config("config", &o);
    if (!c) return 1;
    char *json = fl_config_json(c, NULL, 0);
    cJSON *tree = cJSON_Parse(json);
    char *pretty = cJSON_Print(tree);
    printf("%s\n", pretty);
    free(pretty);
    cJSON_Delete(tree);
    free(json);
    fl_config_free(c);
    return 0;
}
