/* Replays every file of a corpus directory through a libFuzzer target, so the
 * committed corpus and crash regressions run in every normal test run without
 * clang. Exit 0 when every input ran (a crash or sanitizer report fails). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dxb_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *dir = opendir(argv[1]);
    if (dir == NULL) {
        fprintf(stderr, "cannot open corpus %s\n", argv[1]);
        return 2;
    }
    int count = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", argv[1], de->d_name);
        uint8_t *buf = NULL;
        size_t len = 0;
        if (dxb_read_file(path, 16u << 20, &buf, &len) != DXB_OK) {
            continue;
        }
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        count++;
    }
    closedir(dir);
    printf("replayed %d inputs from %s\n", count, argv[1]);
    return 0;
}
