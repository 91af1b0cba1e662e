// libFuzzer harness of the checkpoint loader: each input is written to an in-memory file and
// loaded with ddpm_model_load, the whole path a user's file takes (open, fstat, header
// length, JSON header, tensor table, checksum, metadata configuration, model
// construction, tensor copy, counters). A model that loads is then used once (a 1-row
// predict and a 1-sample, 2-step sample) so that an accepted-but-invalid file shows up
// as a crash or a sanitizer report rather than going unnoticed.
//
// LLVMFuzzerCustomMutator is structure-aware: it parses the input as
//   u64 little-endian N | N bytes of JSON header | data region
// into a small JSON tree — the metadata's configuration strings ("network", "training",
// "schedule", ...), which are JSON inside JSON strings, parsed as trees of their own —
// mutates one node (a value, a key, a shape, an offset, an entry dropped or duplicated),
// serializes it back, fixes the length prefix and recomputes the data_crc32c checksum
// (most of the time: otherwise every data-region edit would stop at the checksum). Inputs
// it cannot parse, and one mutation in sixteen, go to libFuzzer's own byte mutator.
//
// Built and run by `make fuzz` (see fuzz/README.md); the seed corpus comes from
// fuzz/make_corpus.py.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

extern "C" {
#include "ddpm.h"
}

extern "C" size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

// ---- The harness ------------------------------------------------------------------------

// The input lives in an anonymous in-memory file (memfd_create: no name in any folder, so a
// crashed run leaves nothing behind) that the loader opens as /proc/self/fd/N, a regular
// file to fstat. Where memfd is missing, an unlinked-at-exit file in /dev/shm or /tmp.
static int g_fd = -1;
static std::string g_path;

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    g_fd = memfd_create("ddpm-load-fuzz", MFD_CLOEXEC);
    if (g_fd >= 0) {
        g_path = "/proc/self/fd/" + std::to_string(g_fd);
    } else {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        g_path = std::string(dir) + "/ddpm-load-fuzz-" + std::to_string(getpid()) + ".safetensors";
        atexit([] { unlink(g_path.c_str()); });
    }
    ddpm_set_num_threads(1);
    return 0;
}

static void write_file(const uint8_t *data, size_t size) {
    int fd = g_fd >= 0 ? g_fd : open(g_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (g_fd >= 0 && ftruncate(fd, 0) != 0)) { perror("load_fuzzer: open"); abort(); }
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
        if (n <= 0) { perror("load_fuzzer: write"); abort(); }
        done += (size_t)n;
    }
    if (fd != g_fd) close(fd);
}

// Uses a loaded model once; its shapes must be consistent with what the loader accepted.
// The condition batch holds one null-or-zero row of whatever the model is conditioned on
// (a label, a vector, a sequence or tokens of its loaded sizes), so every kind is run.
static void exercise(ddpm_model *model) {
    int64_t size = ddpm_model_sample_size(model);
    int64_t parameters = ddpm_model_num_parameters(model);
    (void)ddpm_model_step(model);
    // A large but valid model is only loaded: running it under ASan would slow every exec.
    if (size < 1 || size > 4096 || parameters < 1 || parameters > 100000) return;
    std::vector<float> x(size, 0.5f), out(size);
    ddpm_cond_params cond = ddpm_cond_params_default();
    if (ddpm_model_get_cond_params(model, &cond) != DDPM_OK) { fprintf(stderr, "get_cond_params failed\n"); abort(); }
    int64_t length = cond.max_length > 0 ? cond.max_length : 1, dim = cond.dim > 0 ? cond.dim : 1;
    if (length * dim > 65536) return;
    int32_t label = 0, row_length = (int32_t)length;
    std::vector<float> vectors((size_t)(length * dim), 0.25f);
    std::vector<int32_t> tokens((size_t)length, cond.vocab_size > 1 ? 1 : 0);
    ddpm_cond_batch batch = ddpm_cond_batch_default();
    switch (cond.kind) {
    case DDPM_COND_CLASSES: batch.labels = &label; break;
    case DDPM_COND_VECTOR: batch.vectors = vectors.data(); batch.vectors_count = dim; break;
    case DDPM_COND_SEQUENCE: batch.vectors = vectors.data(); batch.vectors_count = length * dim; batch.lengths = &row_length; break;
    case DDPM_COND_TOKENS: batch.tokens = tokens.data(); batch.tokens_count = length; break;
    default: break;
    }
    const ddpm_cond_batch *c = cond.kind == DDPM_COND_NONE ? nullptr : &batch;
    ddpm_predict_params pp = ddpm_predict_params_default();
    (void)ddpm_model_predict(model, &pp, DDPM_OUTPUT_EPS, x.data(), 1, 0, c, out.data(), size);
    ddpm_sample_params sp = ddpm_sample_params_default();
    sp.method = DDPM_METHOD_DDIM;
    sp.steps = 2;
    (void)ddpm_model_sample(model, &sp, &pp, c, 1, out.data(), size);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    write_file(data, size);
    ddpm_model *model = nullptr;
    int status = ddpm_model_load(g_path.c_str(), &model);
    if (status == DDPM_OK) {
        if (!model) { fprintf(stderr, "ddpm_model_load returned OK and no model\n"); abort(); }
        exercise(model);
    } else if (model) {
        fprintf(stderr, "ddpm_model_load returned %d but set a model\n", status);
        abort();
    } else if (!ddpm_last_error() || !*ddpm_last_error()) {
        fprintf(stderr, "ddpm_model_load returned %d with no message\n", status);
        abort();
    }
    ddpm_model_free(model);
    return 0;
}

// ---- A small JSON tree --------------------------------------------------------------------
// Numbers keep their text (so "1e999", "-0" and 20-digit integers survive a round trip);
// a string that itself holds a JSON object or array keeps that tree in `inner`.

namespace {

struct Node {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    std::string text;                                  // Number: the literal; String: the value; Bool: true/false
    std::vector<std::unique_ptr<Node>> items;          // Array elements, Object values
    std::vector<std::string> keys;                     // Object keys, parallel to items
    std::unique_ptr<Node> inner;                       // String holding JSON: its tree

    std::unique_ptr<Node> clone() const {
        auto n = std::make_unique<Node>();
        n->kind = kind;
        n->text = text;
        n->keys = keys;
        for (auto &i : items) n->items.push_back(i->clone());
        if (inner) n->inner = inner->clone();
        return n;
    }
};

struct Parser {
    const char *p, *end;
    int depth = 0;
    bool ok = true;

    void ws() { while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++; }
    bool lit(const char *s) {
        size_t n = strlen(s);
        if ((size_t)(end - p) >= n && memcmp(p, s, n) == 0) { p += n; return true; }
        return false;
    }
    bool str(std::string &out) {
        if (p >= end || *p != '"') return false;
        p++;
        while (p < end && *p != '"') {
            char c = *p++;
            if (c != '\\') { out += c; continue; }
            if (p >= end) return false;
            char e = *p++;
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                if (end - p < 4) return false;
                unsigned v = (unsigned)strtoul(std::string(p, 4).c_str(), nullptr, 16);
                p += 4;
                if (v < 0x80) out += (char)v;
                else if (v < 0x800) { out += (char)(0xC0 | (v >> 6)); out += (char)(0x80 | (v & 0x3F)); }
                else { out += (char)(0xE0 | (v >> 12)); out += (char)(0x80 | ((v >> 6) & 0x3F)); out += (char)(0x80 | (v & 0x3F)); }
                break;
            }
            default: return false;
            }
        }
        if (p >= end) return false;
        p++;
        return true;
    }
    std::unique_ptr<Node> value() {
        if (++depth > 64) { ok = false; return nullptr; }
        ws();
        auto n = std::make_unique<Node>();
        if (p >= end) { ok = false; return nullptr; }
        if (*p == '{') {
            n->kind = Node::Object;
            p++; ws();
            if (p < end && *p == '}') { p++; depth--; return n; }
            while (ok) {
                ws();
                std::string k;
                if (!str(k)) { ok = false; return nullptr; }
                ws();
                if (p >= end || *p != ':') { ok = false; return nullptr; }
                p++;
                auto v = value();
                if (!v) { ok = false; return nullptr; }
                n->keys.push_back(k);
                n->items.push_back(std::move(v));
                ws();
                if (p < end && *p == ',') { p++; continue; }
                if (p < end && *p == '}') { p++; break; }
                ok = false; return nullptr;
            }
        } else if (*p == '[') {
            n->kind = Node::Array;
            p++; ws();
            if (p < end && *p == ']') { p++; depth--; return n; }
            while (ok) {
                auto v = value();
                if (!v) { ok = false; return nullptr; }
                n->items.push_back(std::move(v));
                ws();
                if (p < end && *p == ',') { p++; continue; }
                if (p < end && *p == ']') { p++; break; }
                ok = false; return nullptr;
            }
        } else if (*p == '"') {
            n->kind = Node::String;
            if (!str(n->text)) { ok = false; return nullptr; }
            const std::string &s = n->text;
            if (!s.empty() && (s[0] == '{' || s[0] == '[')) {  // JSON inside a string: parse it too
                Parser inner{s.data(), s.data() + s.size(), depth};
                auto tree = inner.value();
                inner.ws();
                if (inner.ok && tree && inner.p == inner.end) n->inner = std::move(tree);
            }
        } else if (lit("true")) { n->kind = Node::Bool; n->text = "true"; }
        else if (lit("false")) { n->kind = Node::Bool; n->text = "false"; }
        else if (lit("null")) { n->kind = Node::Null; }
        else {
            const char *start = p;
            while (p < end && strchr("+-0123456789.eE", *p)) p++;
            if (p == start) { ok = false; return nullptr; }
            n->kind = Node::Number;
            n->text.assign(start, p);
        }
        depth--;
        return n;
    }
};

void escape(std::string &out, const std::string &s) {
    out += '"';
    for (unsigned char c : s) {
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c < 0x20) { char buf[8]; snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
        else out += (char)c;
    }
    out += '"';
}

void serialize(const Node &n, std::string &out) {
    switch (n.kind) {
    case Node::Null: out += "null"; break;
    case Node::Bool: case Node::Number: out += n.text; break;
    case Node::String:
        if (n.inner) { std::string s; serialize(*n.inner, s); escape(out, s); }
        else escape(out, n.text);
        break;
    case Node::Array:
        out += '[';
        for (size_t i = 0; i < n.items.size(); i++) { if (i) out += ','; serialize(*n.items[i], out); }
        out += ']';
        break;
    case Node::Object:
        out += '{';
        for (size_t i = 0; i < n.items.size(); i++) {
            if (i) out += ',';
            escape(out, n.keys[i]);
            out += ':';
            serialize(*n.items[i], out);
        }
        out += '}';
        break;
    }
}

// Every node of a tree (inner trees included), with its parent and index, for picking one;
// `meta` marks the nodes inside "__metadata__" (the configuration, counters, version),
// `config` those of a configuration (JSON inside a metadata string).
struct Slot { Node *node; Node *parent; size_t index; bool meta, config; };
void collect(Node *n, Node *parent, size_t index, bool meta, bool config, std::vector<Slot> &out) {
    out.push_back({n, parent, index, meta, config});
    for (size_t i = 0; i < n->items.size(); i++) {
        bool inside = meta || (n->kind == Node::Object && !parent && !config && n->keys[i] == "__metadata__");
        collect(n->items[i].get(), n, i, inside, config, out);
    }
    if (n->inner) collect(n->inner.get(), nullptr, 0, meta, true, out);
}

// ---- Dictionaries ---------------------------------------------------------------------------
// kKeys and kStrings hold every key and stored name of a checkpoint of format 1 or 2
// (Tests/DDPMTests/CheckpointJSONTests.swift fails when a config gains one they lack).

const char *kNumbers[] = {
    "0", "1", "2", "3", "4", "7", "8", "-1", "-2", "16", "64", "255", "256", "1000", "65535", "65536",
    "1048576", "16777216", "2147483647", "2147483648", "-2147483648", "4294967295", "4294967296",
    "9007199254740993", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "18446744073709551615", "18446744073709551616", "99999999999999999999999", "1e308", "1e999", "-1e999",
    "0.5", "-0", "-0.0", "1e-45", "1e-320", "0.999", "1.0", "1e30", "3e38", "4e38", "1.5", "2.0e0", "01", "+1",
};
const char *kSizes[] = {  // sizes that overflow, or need more memory than there is
    "65536", "1048576", "16777216", "1073741824", "2147483647", "4294967296", "4611686018427387904",
    "9223372036854775807", "3037000500", "46341", "131072", "99999",
};
const char *kStrings[] = {
    "", "F32", "F64", "F16", "BF16", "I32", "I64", "U8", "BOOL", "F4", "f32",
    "swiftddpm-checkpoint", "1", "2", "3", "0", "-1", "+1", "01", " 2", "2 ",
    "mlp", "unet", "linear", "cosine", "sigmoid", "custom", "none", "classes",
    "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616", "-0", "nan", "inf",
    "00000000", "ffffffff", "FFFFFFFF", "0000000g", "{}", "[]", "{\"kind\":\"mlp\"}", "null",
    "vector", "sequence", "tokens", "eps", "x0", "v", "epsilon", "uniform", "importance", "min_snr", "vlb",
    "scaled_linear",
    "0.1.0", "0.2.0", "0.3.0", "0.3", "99.0.0",
};
const char *kKeys[] = {
    "__metadata__", "dtype", "shape", "data_offsets", "format", "format_version", "library_version",
    "network", "training", "conditioning", "schedule", "schedule_kind", "step", "optimizer_step", "rng_seed",
    "rng_counter", "data_crc32c", "kind", "data_dim", "hidden", "depth", "time_embed_dim", "channels", "height",
    "width", "base_channels", "channel_mult", "num_levels", "res_blocks", "attention_levels", "attention_heads",
    "groups", "dropout", "num_classes", "learning_rate", "beta1", "beta2", "adam_eps", "weight_decay",
    "grad_clip", "ema_decay", "label_dropout", "seed", "beta_start", "beta_end", "cosine_s", "max_beta",
    "sigmoid_start", "sigmoid_end", "schedule.betas", "model.x", "ema.x", "dataDim", "_0", "numClasses",
    "betaStart", "betaEnd", "offset", "maxBeta", "optimizer", "gradClip", "emaDecay", "labelDropout",
    "cross_attention_levels", "prediction_target", "loss_weighting", "min_snr_gamma", "learned_variance",
    "vlb_lambda", "timestep_sampling", "max_length", "vocab_size", "resampler.loss_history", "resampler.counts",
    "dim", "encoder_layers", "encoder_heads", "cross_attention_positions",
    // format 1 (0.1.0's Swift names; the network and schedule kind as keys)
    "mlp", "unet", "linear", "cosine", "sigmoid", "custom", "learningRate", "epsilon", "weightDecay", "timeEmbedDim",
    "baseChannels", "channelMult", "resBlocks", "attentionLevels", "attentionHeads", "betaMin", "betaMax", "start", "end",
};
template <size_t N> const char *pick(std::mt19937 &rng, const char *(&table)[N]) { return table[rng() % N]; }

std::unique_ptr<Node> leaf(Node::Kind kind, std::string text) {
    auto n = std::make_unique<Node>();
    n->kind = kind;
    n->text = std::move(text);
    return n;
}

std::string neighbour(std::mt19937 &rng, const std::string &number) {
    char *endp = nullptr;
    long long v = strtoll(number.c_str(), &endp, 10);
    if (endp == number.c_str() || *endp) return pick(rng, kNumbers);
    switch (rng() % 6) {
    case 0: return std::to_string(v + 1);
    case 1: return std::to_string(v - 1);
    case 2: return std::to_string(v * 2);
    case 3: return std::to_string(-v);
    case 4: return std::to_string(v + (long long)(rng() % 64) - 32);
    default: return std::to_string(v / 2);
    }
}

// One structural edit of the tree at a random node; false if nothing was changed.
bool mutate_tree(Node &root, std::mt19937 &rng) {
    std::vector<Slot> slots, meta, config;
    collect(&root, nullptr, 0, false, false, slots);
    for (const Slot &slot : slots) {
        if (slot.meta) meta.push_back(slot);
        if (slot.config) config.push_back(slot);
    }
    // Half the edits go to the metadata, half of those to a configuration: a few dozen nodes
    // against hundreds of tensor fields.
    unsigned where = rng() % 4;
    Slot s = where == 0 && !config.empty() ? config[rng() % config.size()]
           : where == 1 && !meta.empty()   ? meta[rng() % meta.size()]
           : slots[rng() % slots.size()];
    Node &n = *s.node;
    unsigned op = rng() % 16;
    if (op == 0 && s.parent) {  // change the kind of the value
        switch (rng() % 5) {
        case 0: s.parent->items[s.index] = leaf(Node::Null, ""); break;
        case 1: s.parent->items[s.index] = leaf(Node::Bool, rng() % 2 ? "true" : "false"); break;
        case 2: s.parent->items[s.index] = leaf(Node::Number, pick(rng, kNumbers)); break;
        case 3: s.parent->items[s.index] = leaf(Node::String, pick(rng, kStrings)); break;
        default: {
            auto a = std::make_unique<Node>();
            a->kind = rng() % 2 ? Node::Array : Node::Object;
            s.parent->items[s.index] = std::move(a);
        }
        }
        return true;
    }
    if (op == 1 && s.parent && s.parent->items.size() > 0) {  // drop this entry
        s.parent->items.erase(s.parent->items.begin() + s.index);
        if (s.parent->kind == Node::Object) s.parent->keys.erase(s.parent->keys.begin() + s.index);
        return true;
    }
    if (op == 2 && s.parent) {  // duplicate this entry (same key: a duplicate key; or a new key)
        s.parent->items.insert(s.parent->items.begin() + s.index, n.clone());
        if (s.parent->kind == Node::Object) {
            std::string key = rng() % 2 ? s.parent->keys[s.index] : std::string(pick(rng, kKeys));
            s.parent->keys.insert(s.parent->keys.begin() + s.index, key);
        }
        return true;
    }
    if (op == 3 && s.parent && s.parent->kind == Node::Object) {  // rename the key
        std::string &key = s.parent->keys[s.index];
        switch (rng() % 4) {
        case 0: key = pick(rng, kKeys); break;
        case 1: if (!key.empty()) key[rng() % key.size()] ^= (char)(1 << (rng() % 7)); break;
        case 2: key += pick(rng, kKeys); break;
        default: key = key.empty() ? "x" : key.substr(0, rng() % key.size());
        }
        return true;
    }
    if (op == 4 && s.parent && slots.size() > 2) {  // swap with a copy of another node
        const Slot &o = slots[rng() % slots.size()];
        if (o.node != &n && o.node != s.parent) {
            s.parent->items[s.index] = o.node->clone();  // n is gone after this line
            return true;
        }
    }
    switch (n.kind) {
    case Node::Number:
        switch (rng() % (s.config ? 4 : 2)) {  // a configuration's numbers: sizes most of the time
        case 0: n.text = pick(rng, kNumbers); break;
        case 1: n.text = neighbour(rng, n.text); break;
        default: n.text = pick(rng, kSizes);
        }
        return true;
    case Node::String:
        if (n.inner && rng() % 4) return mutate_tree(*n.inner, rng);
        n.inner.reset();
        switch (rng() % 4) {
        case 0: {  // a numeric string (step, rng_seed, format_version) moved
            std::string t = neighbour(rng, n.text);
            n.text = t;
            break;
        }
        case 1: if (!n.text.empty()) n.text[rng() % n.text.size()] ^= (char)(1 << (rng() % 7)); break;
        case 2: n.text += n.text.empty() ? "x" : n.text.substr(rng() % n.text.size()); break;
        default: n.text = pick(rng, kStrings);
        }
        return true;
    case Node::Array:
        switch (rng() % 4) {
        case 0: n.items.push_back(leaf(Node::Number, pick(rng, kNumbers))); break;
        case 1: if (!n.items.empty()) n.items.pop_back(); break;
        case 2: if (!n.items.empty()) n.items.push_back(n.items[rng() % n.items.size()]->clone()); break;
        default: n.items.clear();
        }
        return true;
    case Node::Object:
        if (rng() % 2 || n.items.empty()) {
            n.keys.push_back(pick(rng, kKeys));
            n.items.push_back(rng() % 2 ? leaf(Node::Number, pick(rng, kNumbers)) : leaf(Node::String, pick(rng, kStrings)));
        } else {
            n.items.clear();
            n.keys.clear();
        }
        return true;
    case Node::Bool: n.text = n.text == "true" ? "false" : "true"; return true;
    case Node::Null: return false;
    }
    return false;
}

// ---- Keeping the container valid --------------------------------------------------------------
// After a shape or dtype edit, `retile` lays the tensors out again back to back (each keeping
// its old bytes, cut or zero-padded to its new size), so that the edit gets past the
// container checks and reaches the checkpoint's own (shapes against the configuration).

int64_t dtype_size(const std::string &d) {
    if (d == "F64" || d == "I64" || d == "U64") return 8;
    if (d == "F32" || d == "I32" || d == "U32") return 4;
    if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
    if (d == "F8_E4M3" || d == "F8_E5M2" || d == "I8" || d == "U8" || d == "BOOL") return 1;
    return -1;
}

Node *field(Node &object, const char *key) {
    for (size_t i = 0; i < object.items.size(); i++) if (object.keys[i] == key) return object.items[i].get();
    return nullptr;
}

bool retile(Node &root, std::vector<uint8_t> &region, size_t cap) {
    if (root.kind != Node::Object) return false;
    struct Entry { Node *offsets; int64_t begin, end, bytes; };
    std::vector<Entry> entries;
    int64_t total = 0;
    for (size_t i = 0; i < root.items.size(); i++) {
        Node &t = *root.items[i];
        if (root.keys[i] == "__metadata__" || t.kind != Node::Object) continue;
        Node *dtype = field(t, "dtype"), *shape = field(t, "shape"), *offsets = field(t, "data_offsets");
        if (!dtype || !shape || !offsets || dtype->kind != Node::String || shape->kind != Node::Array ||
            offsets->kind != Node::Array || offsets->items.size() != 2) return false;
        int64_t bytes = dtype_size(dtype->text);
        if (bytes < 0) return false;
        for (auto &d : shape->items) {
            if (d->kind != Node::Number) return false;
            char *endp = nullptr;
            long long v = strtoll(d->text.c_str(), &endp, 10);
            if (*endp || v < 0 || (v > 0 && bytes > (int64_t)cap / v)) return false;
            bytes *= v;
        }
        int64_t b = strtoll(offsets->items[0]->text.c_str(), nullptr, 10);
        int64_t e = strtoll(offsets->items[1]->text.c_str(), nullptr, 10);
        total += bytes;
        if (total > (int64_t)cap) return false;
        entries.push_back({offsets, b, e, bytes});
    }
    std::sort(entries.begin(), entries.end(), [](const Entry &a, const Entry &b) { return a.begin < b.begin; });
    std::vector<uint8_t> out;
    out.reserve(total);
    for (Entry &e : entries) {
        size_t start = out.size();
        out.resize(start + e.bytes, 0);
        if (e.begin >= 0 && e.begin < (int64_t)region.size() && e.end > e.begin) {
            int64_t n = std::min({e.bytes, e.end - e.begin, (int64_t)region.size() - e.begin});
            memcpy(out.data() + start, region.data() + e.begin, n);
        }
        e.offsets->items[0] = leaf(Node::Number, std::to_string(start));
        e.offsets->items[1] = leaf(Node::Number, std::to_string(start + e.bytes));
    }
    region.swap(out);
    return true;
}

// Writes a float that validation must catch (NaN, ±Inf, a huge or negative value) over one
// aligned 4-byte word of the data region: weights, EMA, moments (exp_avg_sq < 0) or betas.
void poke_float(std::vector<uint8_t> &region, std::mt19937 &rng) {
    static const float values[] = {NAN, INFINITY, -INFINITY, 3.4e38f, -1.0f, -1e-30f, 1e-45f, 0.0f, 2.0f};
    if (region.size() < 4) return;
    float v = values[rng() % (sizeof values / sizeof values[0])];
    memcpy(region.data() + 4 * (rng() % (region.size() / 4)), &v, 4);
}

// ---- CRC-32C (as the library computes it, for data_crc32c) ----------------------------------

uint32_t crc32c(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static bool ready = false;
    if (!ready) {
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t c = b;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[b] = c;
        }
        ready = true;
    }
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

void fix_checksum(Node &root, const uint8_t *data, size_t size) {
    if (root.kind != Node::Object) return;
    for (size_t i = 0; i < root.items.size(); i++) {
        Node &meta = *root.items[i];
        if (root.keys[i] != "__metadata__" || meta.kind != Node::Object) continue;
        for (size_t j = 0; j < meta.items.size(); j++) {
            if (meta.keys[j] == "data_crc32c" && meta.items[j]->kind == Node::String && !meta.items[j]->inner) {
                char hex[9];
                snprintf(hex, sizeof hex, "%08x", crc32c(data, size));
                meta.items[j]->text = hex;
            }
        }
    }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    std::mt19937 rng(seed);
    if (size < 8 || rng() % 16 == 0) return LLVMFuzzerMutate(data, size, max_size);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)data[i] << (8 * i);
    if (n > size - 8) return LLVMFuzzerMutate(data, size, max_size);
    Parser parser{(const char *)data + 8, (const char *)data + 8 + n};
    std::unique_ptr<Node> root = parser.value();
    if (!parser.ok || !root) return LLVMFuzzerMutate(data, size, max_size);

    std::vector<uint8_t> region(data + 8 + n, data + size);
    unsigned rounds = 1 + (rng() % 4 == 0 ? rng() % 4 : 0);
    bool changed = false;
    for (unsigned r = 0; r < rounds; r++) changed |= mutate_tree(*root, rng);
    if (rng() % 2) retile(*root, region, max_size);
    if (rng() % 8 == 0) poke_float(region, rng);
    else if (!changed || rng() % 8 == 0) {  // the data region: its bytes or its length
        if (rng() % 4 == 0) region.resize(rng() % 2 && !region.empty() ? rng() % region.size() : region.size() + rng() % 16);
        else if (!region.empty()) {
            size_t capacity = region.size();
            region.resize(capacity + 16);
            size_t len = LLVMFuzzerMutate(region.data(), capacity, region.size());
            region.resize(len);
        }
    }
    if (rng() % 8) fix_checksum(*root, region.data(), region.size());

    std::string header;
    serialize(*root, header);
    uint64_t length = header.size();
    switch (rng() % 64) {  // now and then a wrong length prefix
    case 0: length += 1 + rng() % 8; break;
    case 1: length = length ? length - 1 : 0; break;
    default: break;
    }
    size_t total = 8 + header.size() + region.size();
    if (total > max_size) return LLVMFuzzerMutate(data, size, max_size);
    for (int i = 0; i < 8; i++) data[i] = (uint8_t)(length >> (8 * i));
    memcpy(data + 8, header.data(), header.size());
    if (!region.empty()) memcpy(data + 8 + header.size(), region.data(), region.size());
    return total;
}
