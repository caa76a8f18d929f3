/* SPDX-License-Identifier: MIT */
/* sidecored's config file: each bad input gets its one line, naming the file and line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/config.h"

static char dir[] = "/tmp/sidecore-cfg-XXXXXX", path[128], disk[128];
static struct sc_config c;
static char err[8192];

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sc.conf", dir);
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	FILE *f = fopen(disk, "w");
	fclose(f);
}

static void teardown(void)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 10);

static void write_conf(const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* Load text; expect err, and a message starting with PATH:LINE: containing what. */
static void expect_error(const char *text, int want, int line, const char *what)
{
	write_conf(text);
	int ret = sc_config_load(path, &c, err, sizeof(err));
	if (ret == 0)
		ret = sc_config_check_paths(&c, err, sizeof(err));
	cr_assert_eq(ret, want, "got %d, expected %d: %s", ret, want, err);
	char prefix[160];
	if (line)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	cr_assert(!strncmp(err, prefix, strlen(prefix)), "'%s' does not start with '%s'", err, prefix);
	cr_assert(strstr(err, what), "'%s' lacks '%s'", err, what);
	cr_assert_null(strchr(err, '\n'), "one line");
}

static char good[1024];

/* A config text with the temp dir and disk path filled in (a macro: the format stays a literal). */
#define conf(fmt) (snprintf(good, sizeof(good), fmt, dir, disk), good)

Test(config, valid_file_with_defaults)
{
	write_conf(conf("; a comment\n[sidecore]\ncpus = 0-1,3\n\n[blk.a]\nsocket = %s/a.sock\nbacking = %s\nqueues = 2\n"
			"read_only = yes\n"));
	cr_assert_eq(sc_config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.ncpus, 3);
	cr_assert(c.cpus[0] == 0 && c.cpus[1] == 1 && c.cpus[2] == 3);
	cr_assert_eq(c.budget, 32);
	cr_assert_eq(c.idle_spin_ns, 200000);
	cr_assert_eq(c.nblk, 1);
	cr_assert_str_eq(c.blk[0].name, "a");
	cr_assert_eq(c.blk[0].queues, 2);
	cr_assert(c.blk[0].read_only && !c.blk[0].direct);
	cr_assert_eq(c.blk[0].line, 5);
	cr_assert_eq(sc_config_check_paths(&c, err, sizeof(err)), 0, "%s", err);
}

Test(config, missing_file)
{
	cr_assert_eq(sc_config_load("/nonexistent/sc.conf", &c, err, sizeof(err)), -ENOENT);
	cr_assert(strstr(err, "/nonexistent/sc.conf: cannot open: No such file"), "%s", err);
}

Test(config, unknown_key)
{
	expect_error(conf("[sidecore]\ncpus = 1\n[blk.a]\nsocket = %s/a.sock\nbacking = %s\nqueus = 2\n"), -EINVAL, 6,
		     "unknown key 'queus' in [blk.a]; known keys");
}

Test(config, unknown_key_in_sidecore)
{
	expect_error("[sidecore]\ncpus = 1\nspeed = 11\n", -EINVAL, 3, "unknown key 'speed' in [sidecore]");
}

Test(config, unknown_section)
{
	expect_error("[sidecore]\ncpus = 1\n[net.a]\nport = 0\n", -EINVAL, 4, "unknown section [net.a]");
}

Test(config, section_without_a_name)
{
	expect_error("[sidecore]\ncpus = 1\n[blk.]\nsocket = /tmp/x\n", -EINVAL, 4, "needs a name");
}

Test(config, key_before_any_section)
{
	expect_error("cpus = 1\n[sidecore]\n", -EINVAL, 1, "outside any section");
}

Test(config, duplicate_device)
{
	expect_error(conf("[sidecore]\ncpus = 1\n[blk.a]\nsocket = %s/a.sock\n[blk.a]\nqueues = 1\n%.0s"), -EINVAL, 6,
		     "defined twice (first on line 3)");
}

Test(config, duplicate_key)
{
	expect_error("[sidecore]\ncpus = 1\ncpus = 2\n", -EINVAL, 3, "'cpus' is set twice");
}

Test(config, bad_numbers)
{
	expect_error("[sidecore]\ncpus = 1\nbudget = 0\n", -EINVAL, 3, "budget = '0'");
	expect_error("[sidecore]\ncpus = 1\nbudget = 12x\n", -EINVAL, 3, "budget = '12x'");
	expect_error("[sidecore]\ncpus = 1\nidle_spin_us = -5\n", -EINVAL, 3, "idle_spin_us = '-5'");
	expect_error("[sidecore]\ncpus = 1\n[blk.a]\nqueues = 65\n", -EINVAL, 4, "queues = '65'");
	expect_error("[sidecore]\ncpus = 1\n[blk.a]\nqueues = 99999999999999999999999\n", -EINVAL, 4, "not a number");
}

Test(config, bad_boolean)
{
	expect_error("[sidecore]\ncpus = 1\n[blk.a]\nread_only = maybe\n", -EINVAL, 4, "read_only = 'maybe' is not yes or no");
}

Test(config, bad_cpu_lists)
{
	const char *bad[] = { "1-", "3-1", "x", "1,,2", "1,", "" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[64];
		snprintf(text, sizeof(text), "[sidecore]\ncpus = %s\n", bad[i]);
		expect_error(text, -EINVAL, 2, "is not a cpu list");
	}
}

Test(config, no_sidecore_cpus)
{
	expect_error(conf("[blk.a]\nsocket = %s/a.sock\nbacking = %s\n"), -EINVAL, 0, "no sidecore cpus");
}

Test(config, device_without_socket_or_backing)
{
	expect_error(conf("[sidecore]\ncpus = 1\n[blk.a]\nbacking = %s%s\n"), -EINVAL, 3, "needs socket");
	expect_error(conf("[sidecore]\ncpus = 1\n[blk.a]\nsocket = %s/a.sock%s\n"), -EINVAL, 3, "needs backing");
}

Test(config, socket_path_too_long)
{
	char text[512];
	snprintf(text, sizeof(text), "[sidecore]\ncpus = 1\n[blk.a]\nsocket = /tmp/%0120d\n", 0);
	expect_error(text, -ENAMETOOLONG, 4, "longer than 107 bytes");
}

Test(config, syntax_error)
{
	expect_error("[sidecore]\ncpus = 1\nthis line has no equals sign\n", -EINVAL, 3, "syntax error");
}

Test(config, missing_backing_file)
{
	expect_error(conf("[sidecore]\ncpus = 1\n\n[blk.a]\nsocket = %s/a.sock\nbacking = %s.missing\n"), -ENOENT, 4,
		     "backing '");
	cr_assert(strstr(err, "No such file or directory; create it or fix the path"), "%s", err);
}

Test(config, socket_directory_missing)
{
	expect_error(conf("[sidecore]\ncpus = 1\n[blk.a]\nsocket = %s/no/such/dir/a.sock\nbacking = %s\n"), -ENOENT, 3,
		     "not writable");
}

Test(config, socket_directory_not_writable)
{
	if (geteuid() == 0)
		cr_skip_test("root can write any directory; the missing-directory test covers this path");
	char ro[160];
	snprintf(ro, sizeof(ro), "%s/ro", dir);
	cr_assert_eq(mkdir(ro, 0555), 0);
	char text[512];
	snprintf(text, sizeof(text), "[sidecore]\ncpus = 1\n[blk.a]\nsocket = %s/a.sock\nbacking = %s\n", ro, disk);
	expect_error(text, -EACCES, 3, "not writable");
}

Test(config, two_disks_on_one_socket)
{
	char text[1024];
	snprintf(text, sizeof(text), "[sidecore]\ncpus = 1\n[blk.a]\nsocket = %s/s.sock\nbacking = %s\n"
		 "[blk.b]\nsocket = %s/s.sock\nbacking = %s\n", dir, disk, dir, disk);
	expect_error(text, -EEXIST, 6, "also [blk.a]'s (line 3)");
}

Test(config, cpu_not_allowed)
{
	write_conf("[sidecore]\ncpus = 0,7\n");
	cr_assert_eq(sc_config_load(path, &c, err, sizeof(err)), 0, "%s", err);
	bool allowed[2] = { true, true };
	cr_assert_eq(sc_config_check_cpus(&c, allowed, 2, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, ":2: cpu 7 is not a cpu this process may use"), "%s", err);
}
