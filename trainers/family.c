/* The registry of fiber-model families and the model.* keys. */
#include "trainers/family.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"

const fl_key fl_keys_model[] = {
    {"model.family", FL_KEY_STR, "\"nf\"", FL_NO_BOUNDS, FL_FAMILY_NAMES,
     "The fiber-model family (the families and their sections are listed in the README)."},
    FL_KEYS_END,
};

#define FL_FAMILY_PTR_(id, summary) &fl_family_##id,
static const fl_family *const builtin[] = {FL_FAMILIES(FL_FAMILY_PTR_)};
#define N_BUILTIN ((int)(sizeof builtin / sizeof builtin[0]))
#define MAX_REGISTERED 16
static const fl_family *registered[MAX_REGISTERED];
static int n_registered;

int fl_family_count(void) { return N_BUILTIN + n_registered; }

const fl_family *fl_family_at(int i)
{
    if (i < 0 || i >= fl_family_count()) return NULL;
    return i < N_BUILTIN ? builtin[i] : registered[i - N_BUILTIN];
}

const fl_family *fl_family_find(const char *name)
{
    for (int i = 0; i < fl_family_count(); i++)
        if (strcmp(fl_family_at(i)->name, name) == 0) return fl_family_at(i);
    return NULL;
}

const char *fl_family_names(void) { return fl_config_choices("model.family"); }

int fl_family_register(const fl_family *f)
{
    if (fl_family_find(f->name)) return fl_fail("family '%s' exists already", f->name);
    if (n_registered == MAX_REGISTERED) return fl_fail("more than %d registered families", MAX_REGISTERED);
    if ((f->keys && fl_config_add_section(f->keys, FL_ROLE_MODEL)) ||
        fl_config_add_choice("model.family", f->name) ||
        fl_config_add_choice("sweep.families", f->name))
        return fl_fail_ctx("family '%s'", f->name);
    registered[n_registered++] = f;
    return 0;
}

const char *fl_space_name(fl_space s)
{
    static const char *names[] = {"latent", "pixels"};
    return s < FL_SPACE_COUNT ? names[s] : "?";
}

fl_inn_spec fl_family_inn_spec(const fl_config *c, const char *section, int dim, int cond_dim,
                               int n_steps)
{
    char k[9][64];
    static const char *const names[9] = {"hidden",     "layers",   "clamp", "mixing", "actnorm",
                                         "activation", "coupling", "bins",  "bound"};
    for (int i = 0; i < 9; i++) snprintf(k[i], sizeof k[i], "%.40s.%s", section, names[i]);
    return (fl_inn_spec){
        .dim = dim,
        .cond_dim = cond_dim,
        .n_steps = n_steps,
        .actnorm = fl_cfg_bool(c, k[4]),
        .mixing = strcmp(fl_cfg_str(c, k[3]), "permute") == 0 ? FL_MIX_PERMUTE : FL_MIX_ORTHOGONAL,
        .coupling = {.hidden = (int)fl_cfg_int(c, k[0]),
                     .n_layers = (int)fl_cfg_int(c, k[1]),
                     .n_blocks = 0,
                     .act = fl_act_parse(fl_cfg_str(c, k[5])),
                     .clamp = fl_cfg_num(c, k[2]),
                     .transform = strcmp(fl_cfg_str(c, k[6]), "spline") == 0 ? FL_COUPLING_SPLINE
                                                                             : FL_COUPLING_AFFINE,
                     .bins = (int)fl_cfg_int(c, k[7]),
                     .bound = fl_cfg_num(c, k[8])},
    };
}
