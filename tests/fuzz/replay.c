/* SPDX-License-Identifier: MIT */
/*
 * Replays a target's corpus without libFuzzer: each argument is a file or
 * a directory of files, each fed once to LLVMFuzzerTestOneInput. This is
 * what the meson suite `fuzz` runs in the gcc builds (release and ASan);
 * a crash or a double fetch aborts, and the last "replay:" line names the
 * input. Prints "N inputs" and exits 0 when every input ran.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "replay: %s: cannot open\n", path);
		return -1;
	}
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
	/* A heap copy of the exact size, so ASan sees a read past the input's end. */
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return -1;
	memcpy(copy, buf, n);
	LLVMFuzzerTestOneInput(copy, n);
	free(copy);
	return 0;
}


int main(int argc, char **argv)
{
	unsigned inputs = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: no such file or directory\n", argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) < 0)
				return 1;
			inputs++;
			continue;
		}
		struct dirent **names;
		int n = scandir(argv[i], &names, NULL, alphasort);
		if (n < 0) {
			fprintf(stderr, "replay: %s: cannot read the directory\n", argv[i]);
			return 1;
		}
		for (int k = 0; k < n; k++) {
			char path[4096];
			if (names[k]->d_name[0] != '.') {
				snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
				if (run_file(path) < 0)
					return 1;
				inputs++;
			}
			free(names[k]);
		}
		free(names);
	}
	printf("%u inputs\n", inputs);
	if (!inputs) {
		fprintf(stderr, "replay: no inputs given (arguments: corpus files or directories)\n");
		return 1;
	}
	return 0;
}
