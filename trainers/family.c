/* The registry of fiber-model families and the model.* keys. */
#include "trainers/family.h"

#include <string.h>

static const fl_family *const families[] = {&fl_family_nf};
#define N_FAMILIES (sizeof families / sizeof families[0])

const fl_key fl_keys_model[] = {
    {"model.family", FL_KEY_STR, "\"nf\"", FL_NO_BOUNDS, FL_FAMILY_NAMES,
     "The fiber-model family: nf (conditional normalizing flow)."},
    {"model.temperature", FL_KEY_NUM, "1", 0, 10,
     NULL, "Scale of the base noise when sampling (1: the trained distribution)."},
    FL_KEYS_END,
};

const fl_family *fl_family_find(const char *name)
{
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (strcmp(families[i]->name, name) == 0) return families[i];
    return NULL;
}

const char *fl_family_names(void) { return fl_keys_model[0].choices; }
