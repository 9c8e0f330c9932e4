// Archives: files of named tensors, written atomically and read back whole. Layout
// (little-endian):
//   "CTARCH01" | u64 count | count × { u32 name_len | name | u32 dtype | u32 ndim |
//   i64 dims[ndim] | u64 nbytes | bytes } | u64 FNV-1a hash of everything before it.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "ct_archive.hpp"

using namespace ct;

/* ---- archives ------------------------------------------------------------------- */

static const char kMagic[8] = {'C', 'T', 'A', 'R', 'C', 'H', '0', '1'};

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

namespace {
// Buffered writer that hashes what it writes.
struct hashed_file {
    FILE *f;
    uint64_t h = 1469598103934665603ull;
    bool ok = true;
    void put(const void *p, size_t n) {
        h = fnv1a(h, p, n);
        if (ok && n && fwrite(p, 1, n, f) != n) ok = false;
    }
};
// Bounds-checked reader over a whole file held in memory.
struct reader {
    const unsigned char *p, *end;
    bool take(void *dst, size_t n) {
        if ((size_t)(end - p) < n) return false;
        memcpy(dst, p, n);
        p += n;
        return true;
    }
};
}  // namespace

static bool read_whole_file(const char *path, std::vector<unsigned char> &buf) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        ct_set_error("%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    unsigned char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
    bool err = ferror(f);
    int saved = errno;
    fclose(f);
    if (err) ct_set_error("%s: read error: %s", path, strerror(saved));
    return !err;
}

extern "C" {

ct_archive *ct_archive_new(void) {
    live++;
    return new ct_archive();
}
void ct_archive_free(ct_archive *a) {
    if (!a) return;
    delete a;
    live--;
}
ct_status ct_archive_put(ct_archive *a, const char *name, const ct_tensor *t) {
    if (!a || !name || !t) return null_input("ct_archive_put"), CT_ERR_ARG;
    return guard_status("ct_archive_put", [&] {
        ct_dtype dt;
        if (!from_scalar(t->t.scalar_type(), &dt)) {
            ct_set_error("ct_archive_put: '%s' has an unsupported dtype", name);
            return CT_ERR_ARG;
        }
        at::Tensor c = t->t.detach().to(at::kCPU).contiguous().clone();
        auto it = a->index.find(name);
        if (it != a->index.end()) {
            a->entries[it->second].second = c;
        } else {
            a->index[name] = a->entries.size();
            a->entries.emplace_back(name, c);
        }
        return CT_OK;
    });
}
ct_status ct_archive_put_f64(ct_archive *a, const char *name, double v) {
    if (!a || !name) return null_input("ct_archive_put_f64"), CT_ERR_ARG;
    ct_tensor tmp{at::scalar_tensor(v, at::kDouble), nullptr, 0};
    return ct_archive_put(a, name, &tmp);
}
ct_status ct_archive_put_i64(ct_archive *a, const char *name, int64_t v) {
    if (!a || !name) return null_input("ct_archive_put_i64"), CT_ERR_ARG;
    ct_tensor tmp{at::scalar_tensor(v, at::kLong), nullptr, 0};
    return ct_archive_put(a, name, &tmp);
}

ct_status ct_archive_write(const ct_archive *a, const char *path) {
    if (!a || !path) return null_input("ct_archive_write"), CT_ERR_ARG;
    std::string tmp = std::string(path) + ".tmp." + std::to_string((long)getpid());
    FILE *f = fopen(tmp.c_str(), "wb");
    if (!f) {
        ct_set_error("%s: cannot write: %s", path, strerror(errno));
        return CT_ERR_IO;
    }
    hashed_file hf{f};
    hf.put(kMagic, 8);
    uint64_t count = a->entries.size();
    hf.put(&count, 8);
    for (const auto &e : a->entries) {
        uint32_t nl = (uint32_t)e.first.size();
        ct_dtype dt = CT_F32;
        from_scalar(e.second.scalar_type(), &dt);
        uint32_t dtu = (uint32_t)dt, nd = (uint32_t)e.second.dim();
        hf.put(&nl, 4);
        hf.put(e.first.data(), nl);
        hf.put(&dtu, 4);
        hf.put(&nd, 4);
        for (int64_t d : e.second.sizes()) hf.put(&d, 8);
        uint64_t nb = (uint64_t)e.second.numel() * e.second.element_size();
        hf.put(&nb, 8);
        hf.put(e.second.data_ptr(), nb);
    }
    uint64_t h = hf.h;
    bool ok = hf.ok && fwrite(&h, 1, 8, f) == 8;
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp.c_str(), path) != 0) {
        ct_set_error("%s: write failed: %s", path, strerror(errno));
        unlink(tmp.c_str());
        return CT_ERR_IO;
    }
    return CT_OK;
}

ct_archive *ct_archive_read(const char *path) {
    if (!path) return null_input("ct_archive_read"), nullptr;
    ct_status st;
    return archive_read(path, &st);
}

}  // extern "C"

ct_archive *ct::archive_read(const char *path, ct_status *status) {
    *status = CT_ERR_IO;
    std::vector<unsigned char> buf;
    if (!read_whole_file(path, buf)) return nullptr;
    *status = CT_ERR_FORMAT;
    if (buf.size() < 24 || memcmp(buf.data(), kMagic, 8) != 0) {
        ct_set_error("%s: not a ctorch archive (bad magic)", path);
        return nullptr;
    }
    uint64_t stored;
    memcpy(&stored, buf.data() + buf.size() - 8, 8);
    if (fnv1a(1469598103934665603ull, buf.data(), buf.size() - 8) != stored) {
        ct_set_error("%s: corrupt archive (checksum mismatch)", path);
        return nullptr;
    }
    reader r{buf.data() + 8, buf.data() + buf.size() - 8};
    uint64_t count;
    auto *a = new ct_archive();
    live++;
    auto fail = [&](const char *what) {
        ct_set_error("%s: corrupt archive (%s)", path, what);
        ct_archive_free(a);
        return (ct_archive *)nullptr;
    };
    if (!r.take(&count, 8)) return fail("truncated header");
    try {
        for (uint64_t i = 0; i < count; i++) {
            uint32_t nl, dtu, nd;
            if (!r.take(&nl, 4) || nl > 4096) return fail("bad name length");
            std::string name(nl, '\0');
            if (!r.take(&name[0], nl) || !r.take(&dtu, 4) || !r.take(&nd, 4)) return fail("truncated entry");
            if (dtu >= CT_DTYPE_COUNT || nd > 16) return fail("bad dtype or rank");
            std::vector<int64_t> shape(nd);
            int64_t numel = 1, bytes;
            for (auto &d : shape) {
                if (!r.take(&d, 8) || d < 0 || __builtin_mul_overflow(numel, d, &numel))
                    return fail("bad shape");
            }
            if (__builtin_mul_overflow(numel, (int64_t)ct_dtype_size((ct_dtype)dtu), &bytes))
                return fail("bad shape");
            uint64_t nb;
            if (!r.take(&nb, 8)) return fail("truncated entry");
            if (nb != (uint64_t)bytes || (size_t)(r.end - r.p) < nb) return fail("bad data size");
            at::Tensor t = at::empty(shape, at::TensorOptions().dtype(to_scalar((ct_dtype)dtu)));
            if (nb) r.take(t.data_ptr(), nb);
            a->index[name] = a->entries.size();
            a->entries.emplace_back(name, t);
        }
    } catch (const std::exception &e) {
        return fail(e.what());
    }
    if (r.p != r.end) return fail("trailing bytes");
    *status = CT_OK;
    return a;
}

extern "C" {

int ct_archive_count(const ct_archive *a) { return a ? (int)a->entries.size() : 0; }
const char *ct_archive_name(const ct_archive *a, int i) {
    if (!a || i < 0 || i >= (int)a->entries.size()) return nullptr;
    return a->entries[i].first.c_str();
}
bool ct_archive_has(const ct_archive *a, const char *name) {
    return a && name && a->index.count(name);
}
ct_tensor *ct_archive_get(const ct_archive *a, const char *name) {
    if (!a || !name) return null_input("ct_archive_get"), nullptr;
    auto it = a->index.find(name);
    if (it == a->index.end()) {
        ct_set_error("archive has no entry '%s'", name);
        return nullptr;
    }
    return guard("ct_archive_get", [&] { return a->entries[it->second].second.clone(); });
}
ct_status ct_archive_get_f64(const ct_archive *a, const char *name, double *v) {
    if (!a || !name || !v) return null_input("ct_archive_get_f64"), CT_ERR_ARG;
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_archive_get(a, name);
    ct_status st = CT_ERR_ARG;
    if (t && t->t.numel() == 1) {
        *v = t->t.item<double>();
        st = CT_OK;
    } else if (t) {
        ct_set_error("archive entry '%s' is not a scalar", name);
    }
    ct_scope_end(s);
    return st;
}
ct_status ct_archive_get_i64(const ct_archive *a, const char *name, int64_t *v) {
    if (!a || !name || !v) return null_input("ct_archive_get_i64"), CT_ERR_ARG;
    ct_scope *s = ct_scope_begin();
    ct_tensor *t = ct_archive_get(a, name);
    ct_status st = CT_ERR_ARG;
    if (t && t->t.numel() == 1) {
        *v = t->t.item<int64_t>();
        st = CT_OK;
    } else if (t) {
        ct_set_error("archive entry '%s' is not a scalar", name);
    }
    ct_scope_end(s);
    return st;
}

}  // extern "C"
