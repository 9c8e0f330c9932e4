// The archive handle and what the other ctorch files need of it: lookups by name, and
// save/load of a whole file with the file named in the error message.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ct_internal.hpp"

struct ct_archive {
    std::vector<std::pair<std::string, at::Tensor>> entries;  // CPU, contiguous
    std::map<std::string, size_t> index;
};

namespace ct {

// ct_archive_read, telling a file that cannot be read (CT_ERR_IO) from one that is
// not a valid archive (CT_ERR_FORMAT).
ct_archive *archive_read(const char *path, ct_status *status);

// Save: put into a fresh archive, write it to path. Load: read path, get from it, and
// name the file in the error message.
template <class Put> ct_status save_file(const char *path, Put put) {
    ct_archive *a = ct_archive_new();
    ct_status st = put(a);
    if (!st) st = ct_archive_write(a, path);
    ct_archive_free(a);
    return st;
}
template <class Get> ct_status load_file(const char *path, Get get) {
    ct_status st;
    ct_archive *a = archive_read(path, &st);
    if (!a) return st;
    st = get(a);
    if (st) {
        std::string m = std::string(path) + ": " + ct_last_error();
        ct_set_error("%s", m.c_str());
    }
    ct_archive_free(a);
    return st;
}

}  // namespace ct
