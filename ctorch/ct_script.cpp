// TorchScript modules: how users bring a subject model exported from Python.
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ct_internal.hpp"

using namespace ct;

struct ct_script {
    torch::jit::Module m;
};

/* ---- checking the zip container ------------------------------------------------------
 * libtorch builds its zip reader (miniz) without CRC checks, so a .pt whose tensor data
 * was damaged loads silently with wrong weights. Before loading we walk the central
 * directory and check the CRC-32 of every stored (uncompressed) entry: those hold the
 * tensors and the pickles. Deflated entries (the code) are only bounds-checked; a
 * damaged one fails to inflate or to parse inside torch::jit::load. */
namespace {

uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    static uint32_t table[256];
    static bool ready = [] {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return true;
    }();
    (void)ready;
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
uint32_t le32(const unsigned char *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

struct zip_file {
    FILE *f;
    uint64_t size;
    bool read_at(uint64_t off, void *dst, size_t n) {
        return off <= size && n <= size - off && fseeko(f, (off_t)off, SEEK_SET) == 0 &&
               fread(dst, 1, n, f) == n;
    }
};

// Empty string when the container is sound (or is not a zip: libtorch also reads
// flatbuffer modules, and says itself what is wrong with other files), else what is
// wrong with it.
std::string check_zip(zip_file &z) {
    unsigned char magic[4];
    if (!z.read_at(0, magic, 4) || le32(magic) != 0x04034b50u) return "";
    // End of central directory: the last 22 bytes, or before a comment of up to 64 KiB.
    uint64_t tail_len = std::min<uint64_t>(z.size, 22 + 65535);
    std::vector<unsigned char> tail(tail_len);
    if (tail_len < 22 || !z.read_at(z.size - tail_len, tail.data(), tail_len))
        return "too short for a zip archive";
    int64_t eocd = -1;
    for (int64_t i = (int64_t)tail_len - 22; i >= 0; i--)
        if (le32(&tail[i]) == 0x06054b50u) {
            eocd = i;
            break;
        }
    if (eocd < 0) return "no zip directory (truncated, or not a TorchScript file)";
    uint64_t entries = le16(&tail[eocd + 10]), cd_size = le32(&tail[eocd + 12]),
             cd_off = le32(&tail[eocd + 16]);
    uint64_t eocd_abs = z.size - tail_len + (uint64_t)eocd;
    if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        unsigned char loc[20], rec[56];
        if (eocd_abs < 20 || !z.read_at(eocd_abs - 20, loc, 20) || le32(loc) != 0x07064b50u ||
            !z.read_at(le64(loc + 8), rec, 56) || le32(rec) != 0x06064b50u)
            return "bad zip64 directory";
        entries = le64(rec + 32);
        cd_size = le64(rec + 40);
        cd_off = le64(rec + 48);
    }
    if (cd_off > z.size || cd_size > z.size - cd_off) return "zip directory out of bounds";
    std::vector<unsigned char> cd(cd_size);
    if (!z.read_at(cd_off, cd.data(), cd_size)) return "cannot read the zip directory";
    std::vector<unsigned char> buf(1 << 16);
    size_t p = 0;
    for (uint64_t e = 0; e < entries; e++) {
        if (p + 46 > cd.size() || le32(&cd[p]) != 0x02014b50u) return "bad zip directory entry";
        uint16_t method = le16(&cd[p + 10]), name_len = le16(&cd[p + 28]),
                 extra_len = le16(&cd[p + 30]), comment_len = le16(&cd[p + 32]);
        uint32_t crc = le32(&cd[p + 16]);
        uint64_t comp = le32(&cd[p + 20]), uncomp = le32(&cd[p + 24]), local = le32(&cd[p + 42]);
        if (p + 46 + name_len + extra_len + comment_len > cd.size()) return "bad zip directory entry";
        std::string name((const char *)&cd[p + 46], name_len);
        // zip64 sizes and offset, in this order, for the fields that overflowed
        for (size_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
            uint16_t id = le16(&cd[x]), len = le16(&cd[x + 2]);
            size_t q = x + 4, end = q + len;
            if (end > p + 46 + name_len + extra_len) return "bad zip extra field in '" + name + "'";
            if (id == 0x0001) {
                if (uncomp == 0xFFFFFFFFu && q + 8 <= end) uncomp = le64(&cd[q]), q += 8;
                if (comp == 0xFFFFFFFFu && q + 8 <= end) comp = le64(&cd[q]), q += 8;
                if (local == 0xFFFFFFFFu && q + 8 <= end) local = le64(&cd[q]), q += 8;
            }
            x = end;
        }
        p += 46 + name_len + extra_len + comment_len;
        unsigned char lh[30];
        if (!z.read_at(local, lh, 30) || le32(lh) != 0x04034b50u)
            return "bad local header of '" + name + "'";
        uint64_t data = local + 30 + le16(lh + 26) + le16(lh + 28);
        if (data > z.size || comp > z.size - data) return "'" + name + "' is cut short";
        if (method != 0) continue;
        if (comp != uncomp) return "bad sizes of '" + name + "'";
        uint32_t got = 0;
        for (uint64_t done = 0; done < comp;) {
            size_t n = (size_t)std::min<uint64_t>(buf.size(), comp - done);
            if (!z.read_at(data + done, buf.data(), n)) return "cannot read '" + name + "'";
            got = crc32_update(got, buf.data(), n);
            done += n;
        }
        if (got != crc) return "checksum mismatch in '" + name + "'";
    }
    return "";
}

}  // namespace

extern "C" {

ct_script *ct_script_load(const char *path, ct_device d) {
    if (!path) return null_input("ct_script_load"), nullptr;
    FILE *f = fopen(path, "rb");
    if (!f) {
        ct_set_error("%s: cannot open: %s", path, strerror(errno));
        return nullptr;
    }
    std::string bad;
    {
        zip_file z{f, 0};
        if (fseeko(f, 0, SEEK_END) == 0) z.size = (uint64_t)ftello(f);
        try {
            bad = check_zip(z);
        } catch (const std::exception &e) {  // std::bad_alloc from a huge directory
            bad = e.what();
        }
    }
    fclose(f);
    if (!bad.empty()) {
        ct_set_error("%s: corrupt TorchScript file (%s)", path, bad.c_str());
        return nullptr;
    }
    try {
        auto *s = new ct_script{torch::jit::load(path, to_device(d))};
        live++;
        s->m.eval();
        for (auto p : s->m.parameters()) p.requires_grad_(false);
        return s;
    } catch (const c10::Error &e) {
        set_error(path, e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error(path, e.what());
    } catch (...) {
        set_error(path, "unknown C++ exception");
    }
    return nullptr;
}

void ct_script_free(ct_script *m) {
    if (!m) return;
    delete m;
    live--;
}

bool ct_script_has_method(const ct_script *m, const char *name) {
    if (!m || !name) return false;
    try {
        return m->m.find_method(name).has_value();
    } catch (...) {
        return false;
    }
}

ct_status ct_script_call(ct_script *m, const char *method, const ct_tensor *const *inputs,
                         int n_in, ct_tensor **outputs, int max_out, int *n_out) {
    if (n_out) *n_out = 0;
    for (int i = 0; outputs && i < max_out; i++) outputs[i] = nullptr;
    if (!m || !n_out || (n_in > 0 && !inputs) || n_in < 0 || max_out < 0 ||
        (max_out > 0 && !outputs))
        return null_input("ct_script_call"), CT_ERR_ARG;
    for (int i = 0; i < n_in; i++)
        if (!inputs[i]) return null_input("ct_script_call"), CT_ERR_ARG;
    const char *name = method ? method : "forward";
    std::string op = std::string("ct_script_call: method '") + name + "'";
    std::vector<at::Tensor> flat;
    ct_status st = guard_status(op.c_str(), [&] {
        c10::optional<torch::jit::Method> fn = m->m.find_method(name);
        if (!fn) {
            ct_set_error("%s: the module has no such method", op.c_str());
            return CT_ERR_ARG;
        }
        const c10::FunctionSchema &schema = fn->function().getSchema();
        std::vector<c10::IValue> args;
        args.reserve(n_in);
        for (int i = 0; i < n_in; i++) {
            const at::Tensor &t = inputs[i]->t;
            // argument 0 of a method's schema is self; a one-element tensor stands for
            // a float, int or bool argument
            size_t a = (size_t)i + 1;
            c10::TypeKind kind = a < schema.arguments().size()
                                     ? schema.arguments()[a].type()->kind()
                                     : c10::TypeKind::TensorType;
            if (kind == c10::TypeKind::FloatType || kind == c10::TypeKind::IntType ||
                kind == c10::TypeKind::BoolType) {
                if (t.numel() != 1) {
                    ct_set_error("%s: argument '%s' is a %s, input %d has %lld elements, not 1",
                                 op.c_str(), schema.arguments()[a].name().c_str(),
                                 schema.arguments()[a].type()->str().c_str(), i,
                                 (long long)t.numel());
                    return CT_ERR_ARG;
                }
                at::Scalar v = t.item();
                if (kind == c10::TypeKind::FloatType) args.emplace_back(v.toDouble());
                else if (kind == c10::TypeKind::IntType) args.emplace_back(v.toLong());
                else args.emplace_back(v.toBool());
            } else {
                args.emplace_back(t);
            }
        }
        c10::IValue out = (*fn)(std::move(args));
        // a tensor, or tuples and lists of them (nested ones flattened in order)
        std::string bad;
        std::function<void(const c10::IValue &)> collect = [&](const c10::IValue &v) {
            if (!bad.empty()) return;
            if (v.isTensor()) {
                flat.push_back(v.toTensor());
            } else if (v.isTuple()) {
                for (const c10::IValue &e : v.toTupleRef().elements()) collect(e);
            } else if (v.isList()) {
                for (const c10::IValue &e : v.toListRef()) collect(e);
            } else {
                bad = v.tagKind();
            }
        };
        collect(out);
        if (!bad.empty()) {
            ct_set_error("%s: returned %s, not a tensor or a tuple or list of tensors "
                         "(an element of type %s)", op.c_str(), out.tagKind().c_str(), bad.c_str());
            return CT_ERR_ARG;
        }
        if ((int64_t)flat.size() > max_out) {
            ct_set_error("%s: returned %zu tensors, more than max_out = %d", op.c_str(),
                         flat.size(), max_out);
            return CT_ERR_ARG;
        }
        return CT_OK;
    });
    if (st != CT_OK) {
        // the count of what did not fit, so that the caller can make room
        if ((int64_t)flat.size() > max_out) *n_out = (int)flat.size();
        return st;
    }
    for (size_t i = 0; i < flat.size(); i++) outputs[i] = wrap(flat[i]);
    *n_out = (int)flat.size();
    return CT_OK;
}

ct_tensor *ct_script_forward(ct_script *m, const ct_tensor *x) {
    if (!m || !x) return null_input("ct_script_forward"), nullptr;
    ct_tensor *out[1];
    int n = 0;
    ct_status st = ct_script_call(m, "forward", &x, 1, out, 1, &n);
    if (st == CT_OK && n == 1) return out[0];
    std::string msg = ct_last_error();
    if (st == CT_OK) {  // forward returned an empty tuple or list
        msg = "method 'forward' returned no tensor";
    } else {
        msg = msg.substr(msg.find(':') + 1);  // "ct_script_call: " -> our own name
        if (!msg.empty() && msg[0] == ' ') msg.erase(0, 1);
    }
    ct_set_error("ct_script_forward: %s", msg.c_str());
    return nullptr;
}

}  // extern "C"
