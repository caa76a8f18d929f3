/* SPDX-License-Identifier: MIT */
/*
 * The config file of sidecored (INI, read with libinih):
 *
 *   [sidecore]
 *   cpus = 1,3            ; sidecore cpus, a cpu list ("2-5,7"); required
 *   idle_spin_us = 200    ; spin this long idle before sleeping (0: at once)
 *   budget = 32           ; requests per queue per round, 1..1024
 *
 *   [blk.NAME]            ; one section per disk
 *   socket = /run/sidecore/NAME.sock   ; vhost-user socket, required
 *   backing = /var/lib/NAME.img        ; file or block device, required
 *   queues = 1            ; 1..64
 *   read_only = no        ; yes/no/true/false/1/0
 *   direct = no           ; open the backing with O_DIRECT
 *
 * Every error is one line: "FILE:LINE: what is wrong; what to do".
 */
#ifndef SC_RUNTIME_CONFIG_H
#define SC_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SC_CONFIG_MAX_DEVICES 64
#define SC_CONFIG_MAX_CPUS 256

struct sc_blk_config {
	char name[64];
	char socket[108];        /* sun_path */
	char backing[4096];
	unsigned queues;
	bool read_only, direct;
	int line;                /* of its section header, for later errors */
};

struct sc_config {
	char path[4096];
	int cpus[SC_CONFIG_MAX_CPUS];
	int ncpus;
	int cpus_line;
	uint64_t idle_spin_ns;
	unsigned budget;
	struct sc_blk_config blk[SC_CONFIG_MAX_DEVICES];
	int nblk;
};

/*
 * Parse path into c and check every value's syntax and range. Returns 0,
 * or a negative errno with one line in err ("PATH:LINE: ...").
 */
int sc_config_load(const char *path, struct sc_config *c, char *err, size_t errlen);

/*
 * Check the environment: each backing exists, is a file or block device and
 * is writable unless read-only; each socket's directory exists and is
 * writable; no two disks share a socket. 0 or a negative errno with one line.
 */
int sc_config_check_paths(const struct sc_config *c, char *err, size_t errlen);

/* Check each sidecore cpu is one of allowed[0..n). 0 or -EINVAL with one line. */
int sc_config_check_cpus(const struct sc_config *c, const bool *allowed, int n, char *err, size_t errlen);

#endif
