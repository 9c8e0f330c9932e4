// Archives: files of named tensors that Python reads with h5py alone. An archive is an
// HDF5 file with one dataset per entry ("params/nf.block0.w" is dataset nf.block0.w in
// group params), behind a 512-byte HDF5 user block that holds a CRC-32 of the whole
// file. Written atomically; read back whole, verified, then parsed. docs/runs.md shows
// the layout ("Checkpoint files") and how to read and write it from Python.
//
// User block, little-endian:
//   0  "CTARCH02"        8  u32 CRC-32 (zlib) of bytes 12 .. end of file
//   12 u32 header size   16 u64 file size         24 a line of text, zero-padded to 512
// Each dataset: its entry's dtype (bool as u8 with attribute dtype = "bool") and shape
// (a 0-dim tensor as a scalar dataspace), and attribute index = its place in the write
// order, 0 .. count - 1.
#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>

#include "ct_archive.hpp"

using namespace ct;

/* ---- the user block ------------------------------------------------------------- */
static const char kMagic[8] = {'C', 'T', 'A', 'R', 'C', 'H', '0', '2'};
static const char kMagicV1[8] = {'C', 'T', 'A', 'R', 'C', 'H', '0', '1'};
static const char kHdf5Magic[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
static const size_t kHeader = 512;  // an HDF5 user block: a power of two, at least 512
static const char kHeaderText[] =
    "ctorch archive: an HDF5 file from byte 512 (h5py.File(path) reads it); bytes 8..11 "
    "are the CRC-32 of bytes 12 to the end. See fiberlab docs/runs.md.\n";
static_assert(24 + sizeof kHeaderText <= kHeader, "the header text fits the user block");

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), p, n);
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

namespace {
// A whole file in memory; unlike std::vector, not zero-filled first.
struct file_bytes {
    std::unique_ptr<unsigned char[]> p;
    size_t n = 0;
    void allocate(size_t size) {
        p.reset(new unsigned char[size]);
        n = size;
    }
    unsigned char *data() { return p.get(); }
    const unsigned char *data() const { return p.get(); }
    size_t size() const { return n; }
};
}  // namespace

/* ---- HDF5 plumbing -------------------------------------------------------------- */
namespace {
// An HDF5 identifier, closed when it goes out of scope.
struct h5_id {
    hid_t id;
    herr_t (*close_fn)(hid_t);
    h5_id(hid_t i, herr_t (*c)(hid_t)) : id(i), close_fn(c) {}
    h5_id(const h5_id &) = delete;
    h5_id &operator=(const h5_id &) = delete;
    ~h5_id() { close(); }
    herr_t close() {
        herr_t r = id >= 0 ? close_fn(id) : 0;
        id = H5I_INVALID_HID;
        return r;
    }
    bool bad() const { return id < 0; }
    operator hid_t() const { return id; }
};
}  // namespace

static herr_t innermost_error(unsigned n, const H5E_error2_t *e, void *out) {
    if (n == 0 && e->desc) *(std::string *)out = e->desc;
    return 0;
}
// The first HDF5 failure of this thread's archive call: HDF5 clears its error stack at
// the next API call (the closing of identifiers, say), so it is kept when it happens.
static thread_local std::string h5_first_error;
static herr_t record_error(hid_t stack, void *) {
    if (h5_first_error.empty()) H5Ewalk2(stack, H5E_WALK_UPWARD, innermost_error, &h5_first_error);
    if (h5_first_error.empty()) h5_first_error = "unknown error";
    return 0;
}

namespace {
// HDF5 prints its error stack by default; while an archive is written or read, this
// thread's errors are recorded for the ct message instead (and the setting restored).
struct quiet_hdf5 {
    H5E_auto2_t fn = nullptr;
    void *data = nullptr;
    quiet_hdf5() {
        H5Eget_auto2(H5E_DEFAULT, &fn, &data);
        H5Eset_auto2(H5E_DEFAULT, record_error, nullptr);
        h5_first_error.clear();
    }
    ~quiet_hdf5() { H5Eset_auto2(H5E_DEFAULT, fn, data); }
};
}  // namespace

// What went wrong at the bottom of HDF5's first failure, for messages.
static std::string h5_error() {
    return "HDF5: " + (h5_first_error.empty() ? std::string("unknown error") : h5_first_error);
}

// A name no other in-memory HDF5 file of this process has (HDF5 treats two open files
// of the same name as one).
static std::string memory_file_name(const char *what) {
    static std::atomic<unsigned long> n{0};
    return std::string("ctorch-") + what + "-" + std::to_string((long)getpid()) + "-" +
           std::to_string(n++);
}

static hid_t h5_type(ct_dtype dt) {
    switch (dt) {
    case CT_F32: return H5T_NATIVE_FLOAT;
    case CT_F64: return H5T_NATIVE_DOUBLE;
    case CT_I64: return H5T_NATIVE_INT64;
    case CT_I32: return H5T_NATIVE_INT32;
    default: return H5T_NATIVE_UINT8;  // CT_U8, and CT_BOOL stored as bytes 0 and 1
    }
}

/* ---- entry names ---------------------------------------------------------------- */
// A name is a path of HDF5 links: parts separated by '/', none empty or ".", so that
// the datasets of the file are exactly the entries. NULL when it is one, else why not.
static const char *bad_name(const std::string &n) {
    if (n.empty()) return "it is empty";
    if (n.size() > 4096) return "it is longer than 4096 bytes";
    for (size_t start = 0;;) {
        size_t end = n.find('/', start);
        std::string part = n.substr(start, end == std::string::npos ? end : end - start);
        if (part.empty()) return "it has an empty part (a leading, trailing or double '/')";
        if (part == ".") return "it has a part '.'";
        if (end == std::string::npos) return nullptr;
        start = end + 1;
    }
}
// An entry that would have to be both a dataset and a group with n ("a" and "a/b").
static const std::string *clashing_entry(const ct_archive *a, const std::string &n) {
    for (size_t p = n.find('/'); p != std::string::npos; p = n.find('/', p + 1)) {
        auto it = a->index.find(n.substr(0, p));
        if (it != a->index.end()) return &it->first;
    }
    std::string below = n + "/";
    auto it = a->index.lower_bound(below);
    if (it != a->index.end() && it->first.compare(0, below.size(), below) == 0)
        return &it->first;
    return nullptr;
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
        auto it = a->index.find(name);
        if (it == a->index.end()) {
            if (const char *why = bad_name(name)) {
                ct_set_error("ct_archive_put: name '%s' is not an HDF5 path: %s", name, why);
                return CT_ERR_ARG;
            }
            if (const std::string *other = clashing_entry(a, name)) {
                ct_set_error("ct_archive_put: name '%s' clashes with entry '%s' (one would be "
                             "a group of the other)", name, other->c_str());
                return CT_ERR_ARG;
            }
        }
        at::Tensor c = t->t.detach().to(at::kCPU).contiguous().clone();
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

}  // extern "C"

/* ---- writing -------------------------------------------------------------------- */
static bool write_attr_i64(hid_t obj, const char *name, int64_t v) {
    h5_id space(H5Screate(H5S_SCALAR), H5Sclose);
    h5_id at(H5Acreate2(obj, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    return !at.bad() && H5Awrite(at, H5T_NATIVE_INT64, &v) >= 0 && at.close() >= 0;
}
// A variable-length UTF-8 string: what h5py writes for obj.attrs[name] = "text".
static bool write_attr_str(hid_t obj, const char *name, const char *v) {
    h5_id type(H5Tcopy(H5T_C_S1), H5Tclose);
    if (type.bad() || H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        return false;
    h5_id space(H5Screate(H5S_SCALAR), H5Sclose);
    h5_id at(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    return !at.bad() && H5Awrite(at, type, &v) >= 0 && at.close() >= 0;
}

// One entry as a dataset (its groups exist) with its attributes.
static bool write_entry(hid_t file, hid_t dcpl, const std::string &name, const at::Tensor &t,
                        int64_t index) {
    ct_dtype dt = CT_F32;
    from_scalar(t.scalar_type(), &dt);
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    h5_id space(t.dim() == 0 ? H5Screate(H5S_SCALAR)
                             : H5Screate_simple((int)dims.size(), dims.data(), nullptr),
                H5Sclose);
    if (space.bad()) return false;
    h5_id ds(H5Dcreate2(file, name.c_str(), h5_type(dt), space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
             H5Dclose);
    if (ds.bad()) return false;
    if (t.numel() > 0 &&
        H5Dwrite(ds, h5_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0)
        return false;
    if (!write_attr_i64(ds, "index", index)) return false;
    if (dt == CT_BOOL && !write_attr_str(ds, "dtype", "bool")) return false;
    return ds.close() >= 0;
}

// The archive as an HDF5 file image in memory, after kHeader bytes for the user block.
// Nothing touches the disk here, so a failing HDF5 call or close leaves no file.
static bool build_image(const ct_archive *a, file_bytes &out) {
    size_t data_bytes = 0;
    for (const auto &e : a->entries) data_bytes += e.second.nbytes();
    // grow the memory file once: the data, and generously for the metadata
    size_t increment = data_bytes + 4096 * (a->entries.size() + 16);
    h5_id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    h5_id fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    h5_id gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    h5_id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    // no modification times, so that the same archive gives the same bytes
    if (fapl.bad() || fcpl.bad() || gcpl.bad() || dcpl.bad() ||
        H5Pset_fapl_core(fapl, increment, false) < 0 || H5Pset_userblock(fcpl, kHeader) < 0 ||
        H5Pset_obj_track_times(fcpl, false) < 0 || H5Pset_obj_track_times(gcpl, false) < 0 ||
        H5Pset_obj_track_times(dcpl, false) < 0 ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)
        return false;
    h5_id file(H5Fcreate(memory_file_name("write").c_str(), H5F_ACC_EXCL, fcpl, fapl), H5Fclose);
    if (file.bad()) return false;
    std::set<std::string> groups;
    for (size_t i = 0; i < a->entries.size(); i++) {
        const std::string &name = a->entries[i].first;
        for (size_t p = name.find('/'); p != std::string::npos; p = name.find('/', p + 1)) {
            std::string g = name.substr(0, p);
            if (!groups.insert(g).second) continue;
            h5_id group(H5Gcreate2(file, g.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT), H5Gclose);
            if (group.bad() || group.close() < 0) return false;
        }
        if (!write_entry(file, dcpl, name, a->entries[i].second, (int64_t)i)) return false;
    }
    if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) return false;
    ssize_t n = H5Fget_file_image(file, nullptr, 0);
    if (n <= 0) return false;
    out.allocate(kHeader + (size_t)n);
    memset(out.data(), 0, kHeader);
    if (H5Fget_file_image(file, out.data() + kHeader, (size_t)n) != n) return false;
    return file.close() >= 0;
}

static void seal_header(file_bytes &f) {
    unsigned char *h = f.data();
    memcpy(h, kMagic, 8);
    put_u32(h + 12, (uint32_t)kHeader);
    put_u64(h + 16, (uint64_t)f.size());
    memcpy(h + 24, kHeaderText, sizeof kHeaderText - 1);
    put_u32(h + 8, crc32_of(h + 12, f.size() - 12));
}

static bool write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k == 0) errno = EIO;
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static ct_status archive_write(const ct_archive *a, const char *path) {
    file_bytes f;
    {
        quiet_hdf5 q;
        if (!build_image(a, f)) {
            ct_set_error("%s: cannot write: %s", path, h5_error().c_str());
            return CT_ERR_IO;
        }
    }
    seal_header(f);
    std::string tmp = std::string(path) + ".tmp." + std::to_string((long)getpid());
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        ct_set_error("%s: cannot write: %s", path, strerror(errno));
        return CT_ERR_IO;
    }
    int err = write_all(fd, f.data(), f.size()) && fsync(fd) == 0 ? 0 : errno;
    if (close(fd) != 0 && !err) err = errno;
    if (!err && rename(tmp.c_str(), path) != 0) err = errno;
    if (err) {
        ct_set_error("%s: write failed: %s", path, strerror(err));
        unlink(tmp.c_str());
        return CT_ERR_IO;
    }
    return CT_OK;
}

extern "C" ct_status ct_archive_write(const ct_archive *a, const char *path) {
    if (!a || !path) return null_input("ct_archive_write"), CT_ERR_ARG;
    return guard_status("ct_archive_write", [&] { return archive_write(a, path); });
}

/* ---- reading -------------------------------------------------------------------- */
static bool read_whole_file(const char *path, file_bytes &buf) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ct_set_error("%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    int err = fstat(fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : EISDIR;
    if (!err) {
        buf.allocate((size_t)st.st_size);
        size_t got = 0;
        while (got < buf.size()) {
            ssize_t k = read(fd, buf.data() + got, buf.size() - got);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) err = errno;
            if (k <= 0) break;  // an error, or the file shrank: the checksum tells
            got += (size_t)k;
        }
        buf.n = got;
    }
    close(fd);
    if (err == EISDIR)
        ct_set_error("%s: cannot read: not a regular file", path);
    else if (err)
        ct_set_error("%s: read error: %s", path, strerror(err));
    return !err;
}

// The user block: what the file is, and whether every byte is as written.
static bool check_header(const char *path, const file_bytes &f) {
    const unsigned char *h = f.data();
    if (f.size() >= 8 && memcmp(h, kMagicV1, 8) == 0) {
        ct_set_error("%s: a ctorch archive of the old format (CTARCH01, before HDF5), which "
                     "this version no longer reads: remove it, or write it again", path);
        return false;
    }
    if (f.size() >= 8 && memcmp(h, kHdf5Magic, 8) == 0) {
        ct_set_error("%s: an HDF5 file without the ctorch archive header (bad magic; "
                     "docs/runs.md says how to write one)", path);
        return false;
    }
    if (f.size() < 8 || memcmp(h, kMagic, 8) != 0) {
        ct_set_error("%s: not a ctorch archive (bad magic)", path);
        return false;
    }
    if (f.size() < kHeader) {
        ct_set_error("%s: corrupt archive (truncated to %zu bytes, the checksum cannot match)",
                     path, f.size());
        return false;
    }
    uint64_t size = get_u64(h + 16);
    if (crc32_of(h + 12, f.size() - 12) != get_u32(h + 8)) {
        if (size != f.size())
            ct_set_error("%s: corrupt archive (checksum mismatch; %zu bytes, the header says "
                         "%llu)", path, f.size(), (unsigned long long)size);
        else
            ct_set_error("%s: corrupt archive (checksum mismatch)", path);
        return false;
    }
    if (size != f.size() || get_u32(h + 12) != kHeader) {
        ct_set_error("%s: corrupt archive (header of a valid checksum gives size %llu and "
                     "header size %u)", path, (unsigned long long)size, get_u32(h + 12));
        return false;
    }
    return true;
}

// Whether a stored number type has a standard layout: an integer whose bits fill its
// bytes, an IEEE float of 4 or 8 bytes. HDF5 1.10's converters do not bound the bit fields
// a corrupt header can declare (an integer of 28,781 bits in 4 bytes overran a stack
// variable in H5T__bit_get_d); fiberlab's core/h5.c refuses the same.
static bool standard_layout(hid_t type) {
    H5T_class_t cls = H5Tget_class(type);
    if (cls == H5T_INTEGER)
        return H5Tget_offset(type) == 0 && H5Tget_precision(type) == 8 * H5Tget_size(type);
    return cls == H5T_FLOAT && (H5Tequal(type, H5T_IEEE_F32LE) > 0 || H5Tequal(type, H5T_IEEE_F32BE) > 0 ||
                                H5Tequal(type, H5T_IEEE_F64LE) > 0 || H5Tequal(type, H5T_IEEE_F64BE) > 0);
}
static bool read_attr_i64(hid_t obj, const char *name, int64_t *v) {
    h5_id at(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (at.bad()) return false;
    h5_id space(H5Aget_space(at), H5Sclose);
    h5_id type(H5Aget_type(at), H5Tclose);
    return !space.bad() && H5Sget_simple_extent_npoints(space) == 1 && !type.bad() &&
           H5Tget_class(type) == H5T_INTEGER && standard_layout(type) && H5Aread(at, H5T_NATIVE_INT64, v) >= 0;
}
// A scalar string attribute, variable-length (h5py's str) or fixed-length (numpy's S).
static bool read_attr_str(hid_t obj, const char *name, std::string *v) {
    h5_id at(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (at.bad()) return false;
    h5_id space(H5Aget_space(at), H5Sclose);
    h5_id type(H5Aget_type(at), H5Tclose);
    if (space.bad() || H5Sget_simple_extent_npoints(space) != 1 || type.bad() ||
        H5Tget_class(type) != H5T_STRING)
        return false;
    if (H5Tis_variable_str(type) > 0) {
        char *s = nullptr;
        h5_id mem(H5Tget_native_type(type, H5T_DIR_ASCEND), H5Tclose);
        if (mem.bad() || H5Aread(at, mem, &s) < 0) return false;
        *v = s ? s : "";
        H5free_memory(s);
        return true;
    }
    std::vector<char> buf(H5Tget_size(type) + 1, '\0');
    if (H5Aread(at, type, buf.data()) < 0) return false;
    *v = buf.data();
    return true;
}

namespace {
struct visit_state {
    std::vector<std::string> datasets;
    std::string err;
};
}  // namespace

static herr_t collect_datasets(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    auto *st = (visit_state *)data;
    if (info->type != H5L_TYPE_HARD) {
        st->err = std::string("'") + name + "' is a soft or external link";
        return -1;
    }
    h5_id obj(H5Oopen(g, name, H5P_DEFAULT), H5Oclose);
    if (obj.bad()) {
        st->err = std::string("'") + name + "': " + h5_error();
        return -1;
    }
    H5I_type_t t = H5Iget_type(obj);
    if (t == H5I_DATASET) {
        st->datasets.push_back(name);
    } else if (t != H5I_GROUP) {
        st->err = std::string("'") + name + "' is neither a group nor a dataset";
        return -1;
    }
    return 0;
}

// The ct dtype of a dataset's HDF5 type, or false for one an archive does not hold.
static bool entry_dtype(hid_t type, bool is_bool, ct_dtype *dt) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (!standard_layout(type)) return false;
    if (cls == H5T_FLOAT && (size == 4 || size == 8)) {
        *dt = size == 4 ? CT_F32 : CT_F64;
    } else if (cls == H5T_INTEGER) {
        bool sign = H5Tget_sign(type) == H5T_SGN_2;
        if (sign && size == 8) *dt = CT_I64;
        else if (sign && size == 4) *dt = CT_I32;
        else if (!sign && size == 1) *dt = is_bool ? CT_BOOL : CT_U8;
        else return false;
    } else {
        return false;
    }
    return !is_bool || *dt == CT_BOOL;
}

// Dataset name as a tensor, and its place in the write order; false with why in err.
static bool read_entry(hid_t file, const std::string &name, at::Tensor *out, int64_t *index,
                       std::string &err) {
    std::string what = "dataset '" + name + "'";
    h5_id ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (ds.bad()) return err = what + ": " + h5_error(), false;
    if (H5Aexists(ds, "index") <= 0 || !read_attr_i64(ds, "index", index))
        return err = what + " has no integer attribute 'index'", false;
    bool is_bool = false;
    if (H5Aexists(ds, "dtype") > 0) {
        std::string s;
        if (!read_attr_str(ds, "dtype", &s) || s != "bool")
            return err = what + " has a 'dtype' attribute other than \"bool\"", false;
        is_bool = true;
    }
    h5_id type(H5Dget_type(ds), H5Tclose);
    ct_dtype dt;
    if (type.bad() || !entry_dtype(type, is_bool, &dt))
        return err = what + " has an unsupported type (f32, f64, i64, i32, u8 or bool as u8)",
               false;
    h5_id space(H5Dget_space(ds), H5Sclose);
    H5S_class_t sc = space.bad() ? H5S_NO_CLASS : H5Sget_simple_extent_type(space);
    if (sc != H5S_SCALAR && sc != H5S_SIMPLE) return err = what + " has no shape", false;
    std::vector<int64_t> shape;
    if (sc == H5S_SIMPLE) {
        int nd = H5Sget_simple_extent_ndims(space);
        std::vector<hsize_t> dims(nd > 0 ? (size_t)nd : 0);
        if (nd < 0 || H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0)
            return err = what + ": " + h5_error(), false;
        int64_t numel = 1, bytes;
        for (hsize_t d : dims) {
            if (d > (hsize_t)INT64_MAX || __builtin_mul_overflow(numel, (int64_t)d, &numel))
                return err = what + " is too large", false;
            shape.push_back((int64_t)d);
        }
        if (__builtin_mul_overflow(numel, (int64_t)ct_dtype_size(dt), &bytes))
            return err = what + " is too large", false;
    }
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(to_scalar(dt)));
    if (t.numel() > 0 &&
        H5Dread(ds, h5_type(dt), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0)
        return err = what + ": " + h5_error(), false;
    if (dt == CT_BOOL) {  // before torch sees them: a bool byte is 0 or 1
        const unsigned char *b = (const unsigned char *)t.data_ptr();
        for (int64_t i = 0; i < t.numel(); i++)
            if (b[i] > 1) return err = what + " is bool but holds a byte other than 0 and 1", false;
    }
    *out = t;
    return true;
}

// The entries of a verified file image, in their write order.
static bool parse_image(const file_bytes &f, ct_archive *a, std::string &err) {
    quiet_hdf5 q;
    h5_id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    if (fapl.bad() || H5Pset_fapl_core(fapl, 1 << 16, false) < 0 ||
        H5Pset_file_image(fapl, (void *)f.data(), f.size()) < 0)
        return err = h5_error(), false;
    h5_id file(H5Fopen(memory_file_name("read").c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
    if (file.bad()) return err = h5_error(), false;
    visit_state st;
    if (H5Lvisit(file, H5_INDEX_NAME, H5_ITER_INC, collect_datasets, &st) < 0) {
        if (st.err.empty()) st.err = h5_error();
        return err = st.err, false;
    }
    size_t n = st.datasets.size();
    a->entries.assign(n, {});
    std::vector<bool> seen(n, false);
    for (const std::string &name : st.datasets) {
        at::Tensor t;
        int64_t i;
        if (!read_entry(file, name, &t, &i, err)) return false;
        if (i < 0 || (uint64_t)i >= n || seen[i]) {
            err = "dataset '" + name + "' has index " + std::to_string(i) + ", not one of the " +
                  "unused 0.." + std::to_string((long long)n - 1);
            return false;
        }
        seen[i] = true;
        a->entries[i] = {name, t};
        a->index[name] = (size_t)i;
    }
    if (file.close() < 0) return err = h5_error(), false;
    return true;
}

ct_archive *ct::archive_read(const char *path, ct_status *status) {
    *status = CT_ERR_IO;
    file_bytes buf;
    ct_archive *a = nullptr;
    std::string err;
    try {
        if (!read_whole_file(path, buf)) return nullptr;
        *status = CT_ERR_FORMAT;
        if (!check_header(path, buf)) return nullptr;
        a = ct_archive_new();
        if (parse_image(buf, a, err)) {
            *status = CT_OK;
            return a;
        }
    } catch (const c10::Error &e) {
        err = e.what_without_backtrace();
    } catch (const std::exception &e) {
        err = e.what();  // out of memory for the file, most likely
    }
    ct_set_error("%s: %s (%s)", path, a ? "corrupt archive" : "cannot read", err.c_str());
    ct_archive_free(a);
    return nullptr;
}

extern "C" {

ct_archive *ct_archive_read(const char *path) {
    if (!path) return null_input("ct_archive_read"), nullptr;
    ct_status st;
    return archive_read(path, &st);
}

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
