/* The config store: defaults from the one schema, files and overrides checked key by
 * key with messages that name the key, and configs/README.md in step with the schema. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

static char path[64];

static fl_config *load_text(const char *text)
{
    snprintf(path, sizeof path, "/tmp/fl_config_XXXXXX");
    int fd = mkstemp(path);
    cr_assert_neq(fd, -1);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    fl_config *c = fl_config_load(path);
    unlink(path);
    return c;
}

static void expect_error(const char *text, const char *needle)
{
    fl_config *c = load_text(text);
    cr_expect_null(c, "%s was accepted", text);
    cr_expect(strstr(fl_error(), needle) != NULL, "%s: message '%s' lacks '%s'", text, fl_error(), needle);
    cr_expect(strstr(fl_error(), path) != NULL, "%s: message '%s' does not name the file", text, fl_error());
    fl_config_free(c);
}

Test(config, defaults_come_from_the_schema)
{
    fl_config *c = fl_config_default();
    cr_expect_eq(fl_cfg_int(c, "train.steps"), 2000);
    cr_expect_float_eq(fl_cfg_num(c, "train.lr"), 2e-4, 1e-15);
    cr_expect_str_eq(fl_cfg_str(c, "model.family"), "nf");
    cr_expect_eq(fl_cfg_len(c, "sweep.lambdas"), 3);
    fl_config_free(c);
}

Test(config, files_and_overrides_set_nested_keys)
{
    fl_config *c = load_text("{\"train\": {\"lr\": 1e-3, \"steps\": 10}, \"seed\": 3}");
    cr_assert_not_null(c, "%s", fl_error());
    cr_expect_float_eq(fl_cfg_num(c, "train.lr"), 1e-3, 1e-15);
    cr_expect_eq(fl_cfg_int(c, "seed"), 3);
    cr_expect_eq(fl_config_override(c, "sweep.lambdas=0,0.5,2"), 0, "%s", fl_error());
    cr_expect_float_eq(fl_cfg_list_num(c, "sweep.lambdas", 1), 0.5, 1e-15);
    cr_expect_eq(fl_config_override(c, "sweep.families=[\"nf\"]"), 0, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "sweep.name=1e-3"), 0, "%s", fl_error());
    cr_expect_str_eq(fl_cfg_str(c, "sweep.name"), "1e-3");
    fl_config_free(c);
}

Test(config, bad_files_name_the_key_and_the_file)
{
    expect_error("{\"train\": {\"lrr\": 1}}", "unknown key 'train.lrr'");
    expect_error("{\"bogus\": 1}", "unknown key 'bogus'");
    expect_error("{\"train\": {\"steps\": \"ten\"}}", "'train.steps' must be an integer");
    expect_error("{\"train\": {\"steps\": 2.5}}", "'train.steps' must be an integer");
    expect_error("{\"train\": {\"lambda\": -1}}", "'train.lambda' must be in [0, ");
    expect_error("{\"model\": {\"family\": \"gan\"}}", "'model.family' must be one of");
    expect_error("{\"sweep\": {\"lambdas\": [0, \"x\"]}}", "'sweep.lambdas' must be a list of numbers");
    expect_error("{\"train\": {\"lr\": }", "malformed JSON near line 1");
    expect_error("[1, 2]", "top level must be a JSON object");
}

Test(config, bad_overrides_name_the_key)
{
    fl_config *c = fl_config_default();
    cr_expect_eq(fl_config_override(c, "train.lambda=-2"), -1);
    cr_expect(strstr(fl_error(), "train.lambda") != NULL, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "nope.key=1"), -1);
    cr_expect(strstr(fl_error(), "nope.key") != NULL, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "train.steps"), -1);
    cr_expect(strstr(fl_error(), "key=value") != NULL, "%s", fl_error());
    cr_expect_float_eq(fl_cfg_num(c, "train.lambda"), 0, 0); /* unchanged */
    fl_config_free(c);
}

Test(config, every_key_says_whether_it_changes_the_model_or_the_scores)
{
    int n = fl_config_key_count();
    cr_assert_gt(n, 50);
    for (int i = 0; i < n; i++) {
        const fl_key *k = fl_config_key_at(i);
        fl_key_role r = fl_config_role(k->key);
        cr_expect(r > FL_ROLE_UNSET && r < FL_ROLE_COUNT,
                  "key %s is not classified as model, evaluation or neither (core/schema.c)", k->key);
    }
    cr_expect_null(fl_config_key_at(n));
    cr_expect_eq(fl_config_role("eval.n_targets"), FL_ROLE_EVAL);
    cr_expect_eq(fl_config_role("train.lr"), FL_ROLE_MODEL);
    cr_expect_eq(fl_config_role("nf.blocks"), FL_ROLE_MODEL);
    cr_expect_eq(fl_config_role("threads"), FL_ROLE_NONE);
    cr_expect_eq(fl_config_role("no.such_key"), FL_ROLE_UNSET);
}

Test(config, the_model_key_ignores_evaluation_and_sweep_settings)
{
    fl_config *a = fl_config_default(), *b = fl_config_default();
    char ma[17], mb[17], ea[17], eb[17];
    const char *model_free[] = {"sweep.lambdas=5", "sweep.name=x", "eval.n_targets=7", "threads=1",
                                "out_dir=elsewhere", "eval.temperature=0.5"};
    for (size_t i = 0; i < sizeof model_free / sizeof model_free[0]; i++)
        cr_assert_eq(fl_config_override(b, model_free[i]), 0, "%s", fl_error());
    fl_config_hash_role(a, FL_ROLE_MODEL, ma);
    fl_config_hash_role(b, FL_ROLE_MODEL, mb);
    cr_expect_str_eq(ma, mb);
    fl_config_hash_role(a, FL_ROLE_EVAL, ea);
    fl_config_hash_role(b, FL_ROLE_EVAL, eb);
    cr_expect_str_neq(ea, eb, "eval.* did not change the evaluation key");
    const char *model[] = {"train.lambda=5", "seed=3", "data.seed=2", "nf.blocks=3", "vae.latent=9",
                           "subject.dim=7", "sweep.val_fraction=0.2", "train.ema_decay=0.5"};
    for (size_t i = 0; i < sizeof model / sizeof model[0]; i++) {
        fl_config *c = fl_config_default();
        cr_assert_eq(fl_config_override(c, model[i]), 0, "%s", fl_error());
        char mc[17];
        fl_config_hash_role(c, FL_ROLE_MODEL, mc);
        cr_expect_str_neq(ma, mc, "%s did not change the model key", model[i]);
        fl_config_free(c);
    }
    fl_config_free(a);
    fl_config_free(b);
}

Test(config, parse_reads_json_text_like_a_file)
{
    fl_config *c = fl_config_parse("{\"train\": {\"lr\": 0.5}}", "text");
    cr_assert_not_null(c, "%s", fl_error());
    cr_expect_float_eq(fl_cfg_num(c, "train.lr"), 0.5, 0);
    fl_config_free(c);
    cr_expect_null(fl_config_parse("{\"train\": {\"lrr\": 0.5}}", "the text"));
    cr_expect(strstr(fl_error(), "the text") && strstr(fl_error(), "train.lrr"), "%s", fl_error());
}

Test(config, configs_readme_is_the_schema_documentation)
{
    char *doc = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&doc, &len);
    fl_config_write_doc(m);
    fclose(m);
    FILE *f = fopen(FL_SOURCE_DIR "/configs/README.md", "r");
    cr_assert_not_null(f, "configs/README.md is missing");
    char *have = calloc(1, len + 2);
    size_t n = fread(have, 1, len + 1, f);
    fclose(f);
    cr_expect(n == len && memcmp(have, doc, len) == 0,
              "configs/README.md is out of date: regenerate it with "
              "'fiberlab config --doc > configs/README.md'");
    free(have);
    free(doc);
}

Test(config, the_shipped_configs_load)
{
    const char *files[] = {FL_SOURCE_DIR "/configs/demo.json", FL_SOURCE_DIR "/configs/nf.json",
                           FL_SOURCE_DIR "/configs/full.json", FL_SOURCE_DIR "/configs/paper.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        fl_config *c = fl_config_load(files[i]);
        cr_expect_not_null(c, "%s", fl_error());
        fl_config_free(c);
    }
}

/* The override fails with one line naming the key, and the key keeps its value. */
static void expect_bad_override(fl_config *c, const char *assignment, const char *key)
{
    char *before = fl_config_json(c, NULL, 0);
    cr_expect_eq(fl_config_override(c, assignment), -1, "'%s' was accepted", assignment);
    cr_expect(strstr(fl_error(), key) != NULL, "'%s': message '%s' does not name %s", assignment,
              fl_error(), key);
    cr_expect_null(strchr(fl_error(), '\n'), "'%s': message is not one line: %s", assignment, fl_error());
    char *after = fl_config_json(c, NULL, 0);
    cr_expect_str_eq(after, before, "'%s' changed the config although it failed", assignment);
    free(before);
    free(after);
}

Test(config, overrides_must_parse_the_whole_value)
{
    fl_config *c = fl_config_default();
    const char *bad[][2] = {
        {"train.steps=5abc", "train.steps"},       {"train.lr=0.5garbage", "train.lr"},
        {"train.lr=0x10", "train.lr"},             {"train.lr=1,2", "train.lr"},
        {"train.lr=nan", "train.lr"},              {"seed=1=2", "'seed'"},
        {"sweep.lambdas=1 2", "sweep.lambdas"},    {"sweep.lambdas=1,,2", "sweep.lambdas"},
        {"sweep.lambdas=1,2x", "sweep.lambdas"},   {"sweep.seeds=0,1.5", "sweep.seeds"},
        {"train.div_factor=1_000", "train.div_factor"}, {"data.transpose=truex", "data.transpose"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_bad_override(c, bad[i][0], bad[i][1]);
    /* whole values still pass, surrounding blanks included */
    cr_expect_eq(fl_config_override(c, "train.steps=5"), 0, "%s", fl_error());
    cr_expect_eq(fl_cfg_int(c, "train.steps"), 5);
    cr_expect_eq(fl_config_override(c, "train.lr=5e-1 "), 0, "%s", fl_error());
    cr_expect_float_eq(fl_cfg_num(c, "train.lr"), 0.5, 0);
    cr_expect_eq(fl_config_override(c, "sweep.lambdas=1, 2 ,3"), 0, "%s", fl_error());
    cr_expect_eq(fl_cfg_len(c, "sweep.lambdas"), 3);
    cr_expect_float_eq(fl_cfg_list_num(c, "sweep.lambdas", 2), 3, 0);
    cr_expect_eq(fl_config_override(c, "sweep.lambdas=[4, 5]"), 0, "%s", fl_error());
    cr_expect_eq(fl_cfg_len(c, "sweep.lambdas"), 2);
    fl_config_free(c);
}

Test(config, a_list_of_fixed_length_must_have_that_many_entries)
{
    fl_config *c = fl_config_default();
    expect_bad_override(c, "data.fixed_color=0.1,0.2,0.3,0.4", "data.fixed_color");
    expect_bad_override(c, "data.fixed_color=0.1,0.2", "data.fixed_color");
    cr_expect_eq(fl_config_override(c, "data.fixed_color=0.1,0.2,0.3"), 0, "%s", fl_error());
    fl_config_free(c);
    expect_error("{\"data\": {\"fixed_color\": [0.1, 0.2, 0.3, 0.4]}}", "'data.fixed_color' must have 3 entries");
}

Test(config, folder_keys_stay_inside_their_parent)
{
    fl_config *c = fl_config_default();
    expect_bad_override(c, "out_dir=", "out_dir");
    expect_bad_override(c, "cache_dir=", "cache_dir");
    const char *names[] = {"sweep.name=..", "sweep.name=.", "sweep.name=a/b", "sweep.name=../../x",
                           "sweep.name=/tmp/x", "sweep.name="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) expect_bad_override(c, names[i], "sweep.name");
    cr_expect_eq(fl_cfg_set_str(c, "sweep.name", ".."), -1);
    cr_expect_str_eq(fl_cfg_str(c, "sweep.name"), "sweep");
    /* a path below the working directory is still fine for out_dir, a dotted name for sweep.name */
    cr_expect_eq(fl_config_override(c, "out_dir=../results/x"), 0, "%s", fl_error());
    cr_expect_eq(fl_config_override(c, "sweep.name=..demo.v2"), 0, "%s", fl_error());
    fl_config_free(c);
    expect_error("{\"sweep\": {\"name\": \"../x\"}}", "'sweep.name' must be a plain folder name");
    expect_error("{\"out_dir\": \"\"}", "'out_dir' must name a folder");
}

Test(config, the_device_is_one_ctorch_reads)
{
    fl_config *c = fl_config_default();
    cr_expect_str_eq(fl_cfg_str(c, "device"), "cpu");
    const char *bad[] = {"device=gpu", "device=CPU", "device=cuda:", "device=cuda:x", "device=cuda:-1",
                         "device=cuda:+1", "device=cuda: 1", "device=cuda:1x", "device=cuda0", "device="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_bad_override(c, bad[i], "device");
    /* whether the device is there is the command's to check (cli_opts_config), not the config's */
    const char *good[] = {"cpu", "cuda", "cuda:0", "cuda:3"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cr_expect_eq(fl_cfg_set_str(c, "device", good[i]), 0, "%s: %s", good[i], fl_error());
        cr_expect_str_eq(fl_cfg_str(c, "device"), good[i]);
    }
    fl_config_free(c);
    expect_error("{\"device\": \"tpu\"}", "'device' must be cpu, cuda or cuda:N");
}

/* A long list parses in time linear in its length: 400,000 entries took minutes when
 * each entry was found by a walk from the head of the list. */
Test(config, a_long_list_parses_in_linear_time, .timeout = 60)
{
    enum { N = 400000 };
    char *text = malloc(N * 4 + 64);
    size_t len = (size_t)sprintf(text, "{\"sweep\": {\"lambdas\": [");
    for (int i = 0; i < N; i++) len += (size_t)sprintf(text + len, "%s%d", i ? "," : "", i % 10);
    sprintf(text + len, "]}}");
    double t0 = fl_now();
    fl_config *c = fl_config_parse(text, "long list");
    double took = fl_now() - t0;
    cr_assert_not_null(c, "%s", fl_error());
    cr_expect_eq(fl_cfg_len(c, "sweep.lambdas"), N);
    cr_expect_lt(took, 20.0, "400,000 entries took %.1f s", took);
    fl_config_free(c);
    free(text);
}

Test(config, files_that_are_not_config_files_are_refused_quickly, .timeout = 30)
{
    /* far larger than any config: refused by its size, without reading it */
    char big[64];
    snprintf(big, sizeof big, "/tmp/fl_config_big_XXXXXX");
    int fd = mkstemp(big);
    cr_assert_neq(fd, -1);
    cr_assert_eq(ftruncate(fd, FL_CONFIG_MAX_BYTES + 1), 0);
    close(fd);
    cr_expect_null(fl_config_load(big));
    cr_expect(strstr(fl_error(), big) && strstr(fl_error(), "MiB"), "%s", fl_error());
    unlink(big);
    /* /dev/zero never ends and a FIFO blocks on open: neither is a regular file */
    cr_expect_null(fl_config_load("/dev/zero"));
    cr_expect(strstr(fl_error(), "/dev/zero: not a regular file"), "%s", fl_error());
    char fifo[64];
    snprintf(fifo, sizeof fifo, "/tmp/fl_config_fifo_%ld", (long)getpid());
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_expect_null(fl_config_load(fifo));
    cr_expect(strstr(fl_error(), fifo) && strstr(fl_error(), "not a regular file"), "%s", fl_error());
    unlink(fifo);
    cr_expect_null(fl_config_load("/tmp"));
    cr_expect(strstr(fl_error(), "not a regular file"), "%s", fl_error());
}
