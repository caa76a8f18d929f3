/* SPDX-License-Identifier: MIT */
/*
 * The config file of sidecored (INI, read with libinih):
 *
 *   [sidecore]
 *   cpus = 1,3            ; sidecore cpus, a cpu list ("2-5,7"); required
 *   idle_spin_us = 200    ; spin this long idle before sleeping (0: at once)
 *   budget = 32           ; requests per queue per round, 1..1024
 *   turn_us = 2           ; time a queue's turn may take, 1..1000000 (devices with costly requests end it then)
 *   control_timeout_ms = 5000 ; a front end's message, reply or first ring must come within this
 *
 *   [blk.NAME]            ; one section per disk: TYPE.NAME, TYPE is blk
 *   socket = /run/sidecore/NAME.sock   ; vhost-user socket, required
 *   backing = /var/lib/NAME.img        ; file or block device, required
 *   queues = 1            ; 1..64
 *   queue_size = 256      ; a power of two in 64..32768
 *   read_only = no        ; yes/no/true/false/1/0
 *   direct = no           ; open the backing with O_DIRECT
 *   delay_us = 0          ; hold each completion this long after its request (tests, benchmarks)
 *
 * Values are one line each: a line must fit inih's line buffer (198
 * characters), and an indented line after a key is refused (inih would
 * read it as a continuation of that key's value).
 *
 * Every error is one line: "PATH:LINE: what is wrong; what to do".
 * Nothing here is thread-aware: call from the thread that starts the service.
 */
#ifndef SC_RUNTIME_CONFIG_H
#define SC_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SC_CONFIG_MAX_DEVICES 64
#define SC_CONFIG_MAX_CPUS 256

struct sc_blk_config {
	char name[64];           /* NAME of [blk.NAME]: letters, digits, '_', '-' */
	char socket[108];        /* sizeof(sun_path) */
	char backing[4096];
	unsigned queues, queue_size;
	bool read_only, direct;
	uint64_t delay_ns;       /* delay_us, for sc_blk_backend.delay_ns; 0: off */
	int line;                /* of its section header, for later errors */
};

struct sc_config {
	char path[4096];         /* the file, as given: the PATH of every error */
	int cpus[SC_CONFIG_MAX_CPUS];
	int ncpus;
	uint64_t idle_spin_ns;
	unsigned budget;
	uint64_t turn_ns;        /* a queue's turn, in time (sc_poller_config.turn_ns) */
	unsigned control_timeout_ms;   /* vhost-user control timeout, 10..600000 */
	struct sc_blk_config blk[SC_CONFIG_MAX_DEVICES];
	int nblk;
	int cpus_line;           /* of the 'cpus' key */
};

/*
 * Read the config file at path into *c (cleared first; about 270 KiB, so not
 * on a small stack) and check each section, key and value: syntax, ranges,
 * duplicates, required keys. Defaults fill what the file leaves out. Touches
 * no path the file names (see sc_config_check_paths).
 *
 * Returns 0, or a negative errno with one line in err (errlen bytes,
 * truncated if short): -ENOENT/-EACCES/... if the file cannot be opened or
 * read ("PATH: cannot open: ..."); -EINVAL for syntax, unknown or missing
 * sections and keys, and values that are not what the key takes; -ERANGE for
 * numbers out of range; -EEXIST for a key, device or section given twice;
 * -ENAMETOOLONG for a socket or backing path that does not fit; -E2BIG for
 * more than SC_CONFIG_MAX_DEVICES devices or SC_CONFIG_MAX_CPUS cpus, or a
 * line too long for inih. The first error in the file is the one reported.
 */
int sc_config_load(const char *path, struct sc_config *c, char *err, size_t errlen);

/*
 * Check what a loaded config names, in the file's order: each backing exists,
 * is a regular file or block device, is readable, and writable unless
 * read_only; each socket's directory exists and is writable, and the socket
 * path is free or an old socket; no two devices share a socket, and no
 * writable backing is shared with another device.
 *
 * Returns 0, or a negative errno with one line in err naming the device's
 * section line: the errno of the failing stat/access (-ENOENT, -EACCES,
 * -EROFS, ...), -EINVAL for a backing that is neither a file nor a block
 * device, -ENOTDIR for a socket directory that is not one, -EEXIST for a
 * socket path taken by a non-socket, a shared socket or a shared backing.
 */
int sc_config_check_paths(const struct sc_config *c, char *err, size_t errlen);

/*
 * Check each sidecore cpu is one this process may run on: cpu < n and
 * allowed[cpu]. The caller builds allowed[0..n) (from the cpuset module).
 *
 * Returns 0, or -EINVAL with one line in err naming the 'cpus' line, the cpu
 * and the allowed cpus as a list.
 */
int sc_config_check_cpus(const struct sc_config *c, const bool *allowed, int n, char *err, size_t errlen);

#endif
