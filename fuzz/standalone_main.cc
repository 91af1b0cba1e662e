// A main() for fuzz/load_fuzzer.cc where clang's libFuzzer runtime is missing: runs
// LLVMFuzzerTestOneInput once on every file named on the command line and on every file in
// every folder named (sorted, not recursive), like `load_fuzzer -runs=0 DIR...`. `make test`
// uses it for the fuzzer's smoke pass on such machines, so the harness is compiled and run
// everywhere. Arguments starting with '-' (libFuzzer flags) are ignored. No input is mutated,
// so LLVMFuzzerMutate (which the harness's custom mutator calls) must never run.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>

extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv);
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern "C" size_t LLVMFuzzerMutate(uint8_t *, size_t, size_t) {
    fprintf(stderr, "standalone_main: LLVMFuzzerMutate called without libFuzzer\n");
    abort();
}

static bool is_folder(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

static std::vector<std::string> inputs(const std::string &path) {
    if (!is_folder(path)) return {path};
    std::vector<std::string> files;
    if (DIR *dir = opendir(path.c_str())) {
        while (dirent *e = readdir(dir)) {
            std::string name = e->d_name;
            if (name != "." && name != ".." && !is_folder(path + "/" + name)) files.push_back(path + "/" + name);
        }
        closedir(dir);
    }
    std::sort(files.begin(), files.end());
    return files;
}

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    size_t runs = 0;
    for (int a = 1; a < argc; a++) {
        if (argv[a][0] == '-') continue;
        for (const std::string &file : inputs(argv[a])) {
            std::ifstream in(file, std::ios::binary);
            if (!in) { fprintf(stderr, "standalone_main: cannot read %s\n", file.c_str()); return 1; }
            std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            LLVMFuzzerTestOneInput(data.data(), data.size());
            runs++;
        }
    }
    printf("standalone_main: %zu inputs ran once each, none crashed\n", runs);
    return runs > 0 ? 0 : 1;
}
