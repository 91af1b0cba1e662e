/*
 * checkpoint_mutations.c — a saved checkpoint, damaged every way we could think of, each
 * version loaded in a forked child under alarm():
 *   - truncations (every length near the start, then strided through header and data);
 *   - bit flips (strided through the header, through the data region);
 *   - structured edits of the header and the data: versions, configuration values, counters,
 *     dtypes, shapes, offsets and overlaps, names, a stray tensor, non-finite values and
 *     negative second moments (with the checksum recomputed, so the loader's own checks are
 *     what must catch them).
 * Every damaged file must be refused with DDPM_ERR_FORMAT (or DDPM_ERR_IO), or, for a header
 * flip that still describes a valid model (a digit of the learning rate), load as a model
 * that samples finite values and saves and reloads. Named structured edits must be refused.
 * 0 crashes, 0 hangs, 0 accepted-but-invalid, 0 wrong statuses is the bar.
 *
 *   checkpoint_mutations [-v] <scratch folder>
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

#include "harness.h"

static char dir[1024];
static unsigned char *orig; /* the saved checkpoint */
static size_t orig_len, header_len;
static int accepted_valid, accepted_invalid;

/* ---- CRC-32C (Castagnoli), as the loader checks it ----------------------------------- */
static uint32_t crc32c(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

/* ---- files ------------------------------------------------------------------------------ */
static int write_bytes(const char *path, const unsigned char *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(*n);
    if (fread(p, 1, *n, f) != *n) { free(p); p = NULL; }
    fclose(f);
    return p;
}

/* A file from a header text and a data region: the length prefix is recomputed, and with
 * `fix_crc` the metadata's data_crc32c too. Returns a malloc'ed buffer. */
static unsigned char *assemble(const char *header, const unsigned char *data, size_t data_len, int fix_crc, size_t *out_len) {
    char *h = strdup(header);
    if (fix_crc) {
        char *at = strstr(h, "\"data_crc32c\":\"");
        if (at) {
            char hex[9];
            snprintf(hex, sizeof hex, "%08x", crc32c(data, data_len));
            memcpy(at + 15, hex, 8);
        }
    }
    size_t hl = strlen(h);
    unsigned char *out = malloc(8 + hl + data_len);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, h, hl);
    memcpy(out + 8 + hl, data, data_len);
    *out_len = 8 + hl + data_len;
    free(h);
    return out;
}

/* The header text with its first `find` replaced by `repl` (NULL if `find` is absent). */
static char *replaced(const char *find, const char *repl) {
    char *h = strndup((const char *)orig + 8, header_len);
    char *at = strstr(h, find);
    if (!at) { free(h); return NULL; }
    size_t n = strlen(h) - strlen(find) + strlen(repl) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - h), h, repl, at + strlen(find));
    free(h);
    return out;
}

/* The data offsets [begin, end) of tensor `name` in the original header. */
static int offsets(const char *name, size_t *begin, size_t *end) {
    char key[256];
    snprintf(key, sizeof key, "\"%s\":{\"data_offsets\":[", name);
    char *h = strndup((const char *)orig + 8, header_len);
    char *at = strstr(h, key);
    int ok = at && sscanf(at + strlen(key), "%zu,%zu", begin, end) == 2;
    free(h);
    return ok ? 0 : -1;
}

/* ---- one load, in a child ------------------------------------------------------------- */

/* A loaded model is valid if it samples finite values and saves and reloads. */
static int model_is_valid(ddpm_model *m) {
    int64_t S = ddpm_model_sample_size(m);
    if (S < 1 || S > 1024) return 0;
    float out[4 * 1024];
    ddpm_sample_params p = ddpm_sample_params_default();
    p.steps = 5;
    if (ddpm_model_sample(m, &p, NULL, NULL, 4, out, 4 * S) != DDPM_OK) return 0;
    for (int64_t i = 0; i < 4 * S; i++) if (!isfinite(out[i])) return 0;
    char path[1200];
    snprintf(path, sizeof path, "%s/resaved-%d.safetensors", dir, (int)getpid());
    ddpm_model *again = NULL;
    int ok = ddpm_model_save(m, path) == DDPM_OK && ddpm_model_load(path, &again) == DDPM_OK;
    ddpm_model_free(again);
    unlink(path);
    return ok;
}

enum { REFUSED = 0, ACCEPTED_VALID = 3, ACCEPTED_INVALID = 4, WRONG_STATUS = 5 };

/* Loads `bytes` in a child; `must_refuse`: an accepted file is a wrong status. */
static void try_load(const char *name, const unsigned char *bytes, size_t n, int must_refuse) {
    char path[1200];
    snprintf(path, sizeof path, "%s/mutant.safetensors", dir);
    if (write_bytes(path, bytes, n) != 0) { printf("cannot write %s\n", path); wrong++; return; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(case_seconds);
        ddpm_model *m = NULL;
        int st = ddpm_model_load(path, &m);
        int code;
        if (st == DDPM_ERR_FORMAT || st == DDPM_ERR_IO) code = m == NULL && ddpm_last_error()[0] ? REFUSED : WRONG_STATUS;
        else if (st != DDPM_OK) code = WRONG_STATUS;
        else code = model_is_valid(m) ? ACCEPTED_VALID : ACCEPTED_INVALID;
        if (verbose || code == WRONG_STATUS || code == ACCEPTED_INVALID || (must_refuse && code != REFUSED))
            printf("%s %s: status %d (%s)%s\n", code == REFUSED || (code == ACCEPTED_VALID && !must_refuse) ? "ok   " : "WRONG",
                   name, st, ddpm_status_string(st), st == DDPM_OK ? "" : ddpm_last_error());
        fflush(stdout);
        ddpm_model_free(m);
        _exit(code);
    }
    int status = 0;
    cases_run++;
    while (waitpid(pid, &status, 0) < 0) {}
    if (WIFSIGNALED(status)) {
        if (WTERMSIG(status) == SIGALRM) { hangs++; printf("HANG  %s\n", name); }
        else { crashes++; printf("CRASH %s: signal %d\n", name, WTERMSIG(status)); }
        return;
    }
    switch (WEXITSTATUS(status)) {
    case REFUSED: break;
    case ACCEPTED_VALID: accepted_valid++; if (must_refuse) wrong++; break;
    case ACCEPTED_INVALID: accepted_invalid++; break;
    default: wrong++;
    }
}

/* ---- the mutations -------------------------------------------------------------------- */

static void truncations(void) {
    char name[64];
    for (size_t n = 0; n < orig_len; n += n < 80 ? 1 : (n < 8 + header_len + 64 ? 41 : 173)) {
        snprintf(name, sizeof name, "truncated to %zu bytes", n);
        try_load(name, orig, n, 1);
    }
    try_load("truncated by one byte", orig, orig_len - 1, 1);
    unsigned char *longer = malloc(orig_len + 8);
    memcpy(longer, orig, orig_len);
    memset(longer + orig_len, 0, 8);
    try_load("eight bytes appended", longer, orig_len + 8, 1);
    free(longer);
}

static void bit_flips(void) {
    char name[64];
    unsigned char *m = malloc(orig_len);
    size_t bits = orig_len * 8, header_bits = (8 + header_len) * 8;
    /* every 29th bit of the length prefix and header, every 211th of the data */
    for (size_t b = 0; b < bits; b += b < header_bits ? 29 : 211) {
        memcpy(m, orig, orig_len);
        m[b / 8] ^= (unsigned char)(1u << (b % 8));
        snprintf(name, sizeof name, "bit %zu flipped (%s)", b, b < 64 ? "length" : b < header_bits ? "header" : "data");
        try_load(name, m, orig_len, b >= header_bits); /* the checksum catches every data flip */
    }
    free(m);
}

/* One structured header edit: the first `find` replaced by `repl`; must be refused. */
static void header_edit(const char *name, const char *find, const char *repl) {
    char *h = replaced(find, repl);
    if (!h) { printf("WRONG %s: '%s' is not in the header\n", name, find); wrong++; return; }
    size_t n;
    unsigned char *f = assemble(h, orig + 8 + header_len, orig_len - 8 - header_len, 0, &n);
    try_load(name, f, n, 1);
    free(f);
    free(h);
}

/* One data edit: `len` bytes at offset `at` of tensor `tensor` set to `bytes`, checksum fixed. */
static void data_edit(const char *name, const char *tensor, size_t at, const void *bytes, size_t len) {
    size_t begin, end;
    if (offsets(tensor, &begin, &end) != 0) { printf("WRONG %s: no tensor %s\n", name, tensor); wrong++; return; }
    size_t data_len = orig_len - 8 - header_len;
    unsigned char *data = malloc(data_len);
    memcpy(data, orig + 8 + header_len, data_len);
    memcpy(data + begin + at, bytes, len);
    char *h = strndup((const char *)orig + 8, header_len);
    size_t n;
    unsigned char *f = assemble(h, data, data_len, 1, &n);
    try_load(name, f, n, 1);
    free(f); free(h); free(data);
}

static void structured(void) {
    /* versions and format */
    header_edit("format_version 0", "\"format_version\":\"2\"", "\"format_version\":\"0\"");
    header_edit("format_version -1", "\"format_version\":\"2\"", "\"format_version\":\"-1\"");
    header_edit("format_version +1", "\"format_version\":\"2\"", "\"format_version\":\"+1\"");
    header_edit("format_version 01", "\"format_version\":\"2\"", "\"format_version\":\"01\"");
    header_edit("format_version 3", "\"format_version\":\"2\"", "\"format_version\":\"3\"");
    header_edit("format_version missing", "\"format_version\":\"2\"", "\"format_versiom\":\"2\"");
    header_edit("format other", "\"format\":\"swiftddpm-checkpoint\"", "\"format\":\"other-checkpoint\"");
    /* configuration values (the model is built from them: bounds first) */
    header_edit("data_dim 2^63-1", "\\\"data_dim\\\":2", "\\\"data_dim\\\":9223372036854775807");
    header_edit("data_dim 2^64", "\\\"data_dim\\\":2", "\\\"data_dim\\\":18446744073709551616");
    header_edit("data_dim -1", "\\\"data_dim\\\":2", "\\\"data_dim\\\":-1");
    header_edit("data_dim 2.5", "\\\"data_dim\\\":2", "\\\"data_dim\\\":2.5");
    header_edit("data_dim 3 (shapes no longer match)", "\\\"data_dim\\\":2", "\\\"data_dim\\\":3");
    header_edit("hidden 2^62", "\\\"hidden\\\":16", "\\\"hidden\\\":4611686018427387904");
    header_edit("hidden 65536 (over the memory limit)", "\\\"hidden\\\":16", "\\\"hidden\\\":65536");
    header_edit("depth 4097", "\\\"depth\\\":2", "\\\"depth\\\":4097");
    header_edit("depth 3 (tensors missing)", "\\\"depth\\\":2", "\\\"depth\\\":3");
    header_edit("time_embed_dim 7", "\\\"time_embed_dim\\\":8", "\\\"time_embed_dim\\\":7");
    header_edit("network kind transformer", "\\\"kind\\\":\\\"mlp\\\"", "\\\"kind\\\":\\\"transformer\\\"");
    header_edit("network kind unet", "\\\"kind\\\":\\\"mlp\\\"", "\\\"kind\\\":\\\"unet\\\"");
    header_edit("network not JSON", "\"network\":\"{", "\"network\":\"[{");
    header_edit("num_classes 2 (embedding shape)", "\\\"num_classes\\\":3", "\\\"num_classes\\\":2");
    header_edit("num_classes INT32_MAX", "\\\"num_classes\\\":3", "\\\"num_classes\\\":2147483647");
    header_edit("num_classes -1", "\\\"num_classes\\\":3", "\\\"num_classes\\\":-1");
    header_edit("conditioning none: a stray class embedding", "{\\\"kind\\\":\\\"classes\\\",\\\"num_classes\\\":3}",
                "{\\\"kind\\\":\\\"none\\\"}");
    header_edit("learning_rate -1", "\\\"learning_rate\\\":0.001", "\\\"learning_rate\\\":-1");
    header_edit("beta1 1", "\\\"beta1\\\":0.9", "\\\"beta1\\\":1");
    header_edit("ema_decay 2", "\\\"ema_decay\\\":0.995", "\\\"ema_decay\\\":2");
    header_edit("training field missing", "\\\"grad_clip\\\"", "\\\"grad_clop\\\"");
    header_edit("schedule kind unknown", "\\\"kind\\\":\\\"linear\\\"", "\\\"kind\\\":\\\"quadratic\\\"");
    /* counters */
    header_edit("step INT64_MAX", "\"step\":\"8\"", "\"step\":\"9223372036854775807\"");
    header_edit("step 2^53 + 1", "\"step\":\"8\"", "\"step\":\"9007199254740993\"");
    header_edit("step -1", "\"step\":\"8\"", "\"step\":\"-1\"");
    header_edit("step +8", "\"step\":\"8\"", "\"step\":\"+8\"");
    header_edit("step 08", "\"step\":\"8\"", "\"step\":\"08\"");
    header_edit("optimizer_step INT64_MAX", "\"optimizer_step\":\"8\"", "\"optimizer_step\":\"9223372036854775807\"");
    header_edit("optimizer_step 8.0", "\"optimizer_step\":\"8\"", "\"optimizer_step\":\"8.0\"");
    header_edit("rng_counter x", "\"rng_counter\":\"", "\"rng_counter\":\"x");
    header_edit("rng_seed -0", "\"rng_seed\":\"0\"", "\"rng_seed\":\"-0\"");
    /* the tensor table */
    header_edit("dtype F64 (byte count)", "\"dtype\":\"F32\"", "\"dtype\":\"F64\"");
    header_edit("dtype I32 (same bytes, wrong type)", "\"dtype\":\"F32\"", "\"dtype\":\"I32\"");
    header_edit("dtype Q4 (unknown)", "\"dtype\":\"F32\"", "\"dtype\":\"Q4\"");
    header_edit("schedule.betas as F32", "\"dtype\":\"F64\"", "\"dtype\":\"F32\"");
    header_edit("shape [8] -> [4]", "\"shape\":[16]", "\"shape\":[8]");
    header_edit("shape [16] -> [4,4] (same count)", "\"shape\":[16]", "\"shape\":[4,4]");
    header_edit("shape -1", "\"shape\":[16]", "\"shape\":[-1]");
    header_edit("shape 2^63-1", "\"shape\":[16]", "\"shape\":[9223372036854775807]");
    header_edit("shape [2^32, 2^32]", "\"shape\":[16]", "\"shape\":[4294967296,4294967296]");
    header_edit("name changed (missing + unknown)", "\"model.in_proj.bias\"", "\"model.in_proj.biaz\"");
    header_edit("name duplicated", "\"ema.in_proj.bias\"", "\"model.in_proj.bias\"");
    /* offsets: shifted, shortened, overlapping another tensor */
    size_t b0, e0, b1, e1;
    char find[128], repl[128];
    if (offsets("model.in_proj.bias", &b0, &e0) == 0 && offsets("model.in_proj.weight", &b1, &e1) == 0) {
        snprintf(find, sizeof find, "\"data_offsets\":[%zu,%zu]", b0, e0);
        snprintf(repl, sizeof repl, "\"data_offsets\":[%zu,%zu]", b0 + 4, e0 + 4);
        header_edit("offsets shifted by 4", find, repl);
        snprintf(repl, sizeof repl, "\"data_offsets\":[%zu,%zu]", b0, e0 - 4);
        header_edit("offsets 4 bytes short", find, repl);
        snprintf(repl, sizeof repl, "\"data_offsets\":[%zu,%zu]", b1, b1 + (e0 - b0));
        header_edit("offsets overlapping another tensor", find, repl);
        snprintf(repl, sizeof repl, "\"data_offsets\":[%zu,%zu]", e0, b0);
        header_edit("offsets reversed", find, repl);
        snprintf(repl, sizeof repl, "\"data_offsets\":[%zu,18446744073709551615]", b0);
        header_edit("offset end 2^64-1", find, repl);
    } else {
        printf("WRONG offsets: tensors not found\n");
        wrong++;
    }
    header_edit("header not an object", "{\"__metadata__\"", "[\"__metadata__\"");
    header_edit("metadata value not a string", "\"step\":\"8\"", "\"step\":8");
    /* values, with the checksum recomputed */
    float nan = NAN, inf = INFINITY, minus1 = -1;
    double dnan = NAN, d15 = 1.5;
    data_edit("NaN weight", "model.blocks.0.fc1.weight", 4, &nan, 4);
    data_edit("+Inf EMA", "ema.out_proj.bias", 0, &inf, 4);
    data_edit("-Inf exp_avg", "optimizer.exp_avg.in_proj.weight", 8, &(float){-INFINITY}, 4);
    data_edit("negative exp_avg_sq", "optimizer.exp_avg_sq.time.fc1.bias", 0, &minus1, 4);
    data_edit("NaN exp_avg_sq", "optimizer.exp_avg_sq.class_embedding.weight", 12, &nan, 4);
    data_edit("NaN beta", "schedule.betas", 8, &dnan, 8);
    data_edit("beta 1.5", "schedule.betas", 0, &d15, 8);
    {   /* betas that underflow alpha_bar: 0.99 for every step */
        size_t b, e;
        offsets("schedule.betas", &b, &e);
        double *big = malloc(e - b);
        for (size_t i = 0; i < (e - b) / 8; i++) big[i] = 0.999999;
        data_edit("betas that underflow alpha_bar", "schedule.betas", 0, big, e - b);
        free(big);
    }
    /* The checksum itself: a stale one is corruption; none at all still loads. */
    {
        size_t data_len = orig_len - 8 - header_len, n;
        unsigned char *data = malloc(data_len);
        memcpy(data, orig + 8 + header_len, data_len);
        data[data_len / 2] ^= 0x10;
        char *h = strndup((const char *)orig + 8, header_len);
        unsigned char *f = assemble(h, data, data_len, 0, &n);
        try_load("data changed, checksum stale", f, n, 1);
        free(f);
        char *without = replaced("\"data_crc32c\":\"", "\"data_crc32x\":\"");
        f = assemble(without, orig + 8 + header_len, data_len, 0, &n);
        try_load("checksum key renamed (an unknown metadata key is fine, the file still loads)", f, n, 0);
        free(f); free(without); free(h); free(data);
    }
}

int main(int argc, char **argv) {
    int a = 1;
    if (a < argc && strcmp(argv[a], "-v") == 0) { verbose = 1; a++; }
    if (a >= argc) { fprintf(stderr, "usage: %s [-v] <scratch folder>\n", argv[0]); return 2; }
    snprintf(dir, sizeof dir, "%s/checkpoint_mutations", argv[a]);
    mkdir(dir, 0755);
    setvbuf(stdout, NULL, _IOLBF, 0);
    ddpm_set_num_threads(1);
    case_seconds = 20;

    /* A small class-conditional MLP trained for 8 steps (moments, EMA and counters set). */
    ddpm_schedule_params sp = ddpm_schedule_params_default();
    sp.num_timesteps = 20;
    ddpm_mlp_params net = ddpm_mlp_params_default();
    net.data_dim = 2; net.hidden = 16; net.depth = 2; net.time_embed_dim = 8;
    ddpm_cond_params cond = ddpm_cond_params_default();
    cond.kind = DDPM_COND_CLASSES; cond.num_classes = 3;
    ddpm_schedule *s = NULL;
    ddpm_model *m = NULL;
    float x[64];
    int32_t labels[32];
    for (int i = 0; i < 64; i++) x[i] = (float)((i * 37) % 17) / 8 - 1;
    for (int i = 0; i < 32; i++) labels[i] = i % 4;
    ddpm_cond_batch cb = ddpm_cond_batch_default();
    cb.labels = labels;
    char path[1200];
    snprintf(path, sizeof path, "%s/original.safetensors", dir);
    int st = ddpm_schedule_create(&sp, &s);
    if (st == DDPM_OK) st = ddpm_model_create(s, &net.base, NULL, &cond, &m);
    for (int i = 0; i < 8 && st == DDPM_OK; i++) st = ddpm_model_train_step(m, x, 32, 64, &cb, NULL);
    if (st == DDPM_OK) st = ddpm_model_save(m, path);
    ddpm_model_free(m);
    ddpm_schedule_free(s);
    if (st != DDPM_OK || !(orig = read_bytes(path, &orig_len)) || orig_len < 8) {
        fprintf(stderr, "fixture: %s\n", ddpm_last_error());
        return 2;
    }
    for (int i = 0; i < 8; i++) header_len |= (size_t)orig[i] << (8 * i);

    try_load("the original", orig, orig_len, 0);
    if (accepted_valid != 1) { printf("the unedited checkpoint does not load\n"); wrong++; }
    accepted_valid = 0;
    truncations();
    bit_flips();
    structured();
    printf("checkpoint_mutations: %d accepted and valid (header flips that still describe a valid model), "
           "%d accepted but invalid\n", accepted_valid, accepted_invalid);
    free(orig);
    return summary("checkpoint_mutations") || accepted_invalid != 0;
}
