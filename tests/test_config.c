/* SPDX-License-Identifier: MIT */
/* sidecored's config file: each bad input gets its one line, naming the file and line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/config.h"

/* Each test runs in its own process, so each gets its own temp dir. */
static char dir[] = "/tmp/sidecore-cfg-XXXXXX", path[128], disk[128], disk2[128];
static bool made;
static struct sc_config c;
static char err[8192];

static void touch(const char *p, mode_t mode)
{
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f, "%s: %s", p, strerror(errno));
	fclose(f);
	cr_assert_eq(chmod(p, mode), 0);
}

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	made = true;
	snprintf(path, sizeof(path), "%s/sc.conf", dir);
	snprintf(disk, sizeof(disk), "%s/disk.img", dir);
	snprintf(disk2, sizeof(disk2), "%s/disk2.img", dir);
	touch(disk, 0644);
	touch(disk2, 0644);
}

static int remove_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_DP)
		chmod(p, 0700);   /* a 0555 test dir */
	return remove(p) < 0 ? -1 : 0;
}

/* Runs after a failed assertion too. */
static void teardown(void)
{
	if (made)
		nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	made = false;
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 10);

/* Criterion runs no .fini after a skip: clean up first. */
#define skip_test(reason)            \
	do {                         \
		teardown();          \
		cr_skip_test(reason); \
	} while (0)

static void write_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void write_conf(const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

/* err is one line, starting with PATH:LINE: (PATH: when line is 0), and holds what. */
static void check_err(int ret, int want, int line, const char *what)
{
	char prefix[160];

	cr_assert_eq(ret, want, "got %d (%s), expected %d (%s): %s", ret, strerror(-ret), want, strerror(-want), err);
	if (line)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	cr_assert(!strncmp(err, prefix, strlen(prefix)), "'%s' does not start with '%s'", err, prefix);
	cr_assert(strstr(err, what), "'%s' lacks '%s'", err, what);
	cr_assert_null(strchr(err, '\n'), "not one line: '%s'", err);
}

static void load_fails(int want, int line, const char *what)
{
	check_err(sc_config_load(path, &c, err, sizeof(err)), want, line, what);
}

static void load_ok(void)
{
	cr_assert_eq(sc_config_load(path, &c, err, sizeof(err)), 0, "%s", err);
}

static void paths_fail(int want, int line, const char *what)
{
	load_ok();
	check_err(sc_config_check_paths(&c, err, sizeof(err)), want, line, what);
}

static void paths_ok(void)
{
	load_ok();
	cr_assert_eq(sc_config_check_paths(&c, err, sizeof(err)), 0, "%s", err);
}

/* Two lines, so a device section that follows starts on line 3. */
#define SIDECORE "[sidecore]\ncpus = 1\n"

/* One device [blk.a] on lines 3..5, then extra lines. */
#define write_dev(extra) write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\n" extra, dir, disk)

/* ---- good files ---- */

Test(config, full_valid_file_with_two_devices_and_defaults)
{
	write_conf("; sidecore.conf\n"
		   "[sidecore]\n"
		   "cpus = 1,3            ; sidecore cpus\n"
		   "idle_spin_us = 50\n"
		   "budget = 64\n"
		   "turn_us = 5\n"
		   "\n"
		   "[blk.disk0]           ; one section per device\n"
		   "socket = %s/disk0.sock\n"
		   "backing = %s\n"
		   "queues = 2\n"
		   "queue_size = 1024\n"
		   "read_only = yes\n"
		   "direct = true\n"
		   "\n"
		   "[blk.disk-1_b]\n"
		   "socket = %s/disk1.sock\n"
		   "backing = %s\n",
		   dir, disk, dir, disk2);
	paths_ok();
	cr_assert_str_eq(c.path, path);
	cr_assert_eq(c.ncpus, 2);
	cr_assert(c.cpus[0] == 1 && c.cpus[1] == 3);
	cr_assert_eq(c.cpus_line, 3);
	cr_assert_eq(c.idle_spin_ns, 50000);
	cr_assert_eq(c.budget, 64);
	cr_assert_eq(c.turn_ns, 5000);
	cr_assert_eq(c.nblk, 2);

	const struct sc_blk_config *a = &c.blk[0], *b = &c.blk[1];
	char want[256];
	cr_assert_str_eq(a->name, "disk0");
	snprintf(want, sizeof(want), "%s/disk0.sock", dir);
	cr_assert_str_eq(a->socket, want);
	cr_assert_str_eq(a->backing, disk);
	cr_assert_eq(a->queues, 2);
	cr_assert_eq(a->queue_size, 1024);
	cr_assert(a->read_only && a->direct);
	cr_assert_eq(a->line, 8);

	cr_assert_str_eq(b->name, "disk-1_b");
	cr_assert_str_eq(b->backing, disk2);
	cr_assert_eq(b->queues, 1, "default");
	cr_assert_eq(b->queue_size, 256, "default");
	cr_assert(!b->read_only && !b->direct, "defaults");
	cr_assert_eq(b->line, 16);
}

Test(config, comments_and_blank_lines)
{
	write_conf("\n; a comment\n# another\n\n   ; indented comment\n[sidecore]   ; trailing\n\n"
		   "# between\ncpus = 2 ; inline\n\n  ; indented comment after a key\n\n"
		   "[blk.a]\nsocket = %s/a;b.sock\nbacking = %s\n\n", dir, disk);
	load_ok();
	cr_assert_eq(c.cpus_line, 9);
	cr_assert_eq(c.idle_spin_ns, 200000, "default");
	cr_assert_eq(c.budget, 32, "default");
	cr_assert_eq(c.turn_ns, 2000, "default");
	cr_assert_eq(c.blk[0].line, 13);
	char want[256];
	snprintf(want, sizeof(want), "%s/a;b.sock", dir);
	cr_assert_str_eq(c.blk[0].socket, want, "';' not after a space is part of the value");
}

Test(config, crlf_bom_indented_first_key_and_spaced_header)
{
	write_conf("\xEF\xBB\xBF[ sidecore ]\r\n    cpus = 4\r\nbudget = 8");
	load_ok();
	cr_assert_eq(c.cpus[0], 4);
	cr_assert_eq(c.cpus_line, 2);
	cr_assert_eq(c.budget, 8, "last line without a newline");
}

Test(config, cpu_list_ranges_expand)
{
	static const int want[] = { 2, 3, 4, 5, 7 };
	write_conf("[sidecore]\ncpus = 2-5,7\n");
	load_ok();
	cr_assert_eq(c.ncpus, 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(c.cpus[i], want[i]);
	write_conf("[sidecore]\ncpus =  2 - 5 , 7\n");
	load_ok();
	cr_assert_eq(c.ncpus, 5, "white space around numbers");
	write_conf("[sidecore]\ncpus = 0-255\n");
	load_ok();
	cr_assert_eq(c.ncpus, SC_CONFIG_MAX_CPUS);
}

Test(config, boolean_spellings)
{
	static const char *const yes[] = { "yes", "true", "1", "YES", "True" }, *const no[] = { "no", "false", "0", "No" };
	for (unsigned i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\nread_only = %s\n", yes[i]);
		load_ok();
		cr_assert(c.blk[0].read_only, "%s", yes[i]);
	}
	for (unsigned i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\ndirect = %s\n", no[i]);
		load_ok();
		cr_assert(!c.blk[0].direct, "%s", no[i]);
	}
}

Test(config, iopoll_and_fixed_buffers_are_per_disk_booleans_and_iopoll_needs_direct)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\ndirect = yes\niopoll = yes\n");
	load_ok();
	cr_assert(c.blk[0].iopoll && c.blk[0].direct);
	cr_assert_eq(c.blk[0].iopoll_line, 7);
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\n");
	load_ok();
	cr_assert(!c.blk[0].iopoll, "default");
	cr_assert(c.blk[0].fixed_buffers, "default");
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\nfixed_buffers = no\n");
	load_ok();
	cr_assert(!c.blk[0].fixed_buffers);
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\niopoll = maybe\n");
	load_fails(-EINVAL, 6, "iopoll = 'maybe' is not a boolean; use yes or no");
	/* Polling needs O_DIRECT: refused at the iopoll line, whatever the key order. */
	write_conf(SIDECORE "[blk.a]\nsocket = /s\niopoll = yes\nbacking = /b\n");
	load_fails(-EINVAL, 5, "[blk.a] iopoll = yes needs direct = yes (only O_DIRECT I/O can be polled); add direct = yes "
			       "or drop iopoll");
}

/* ---- the file itself ---- */

Test(config, missing_file)
{
	cr_assert_eq(sc_config_load("/nonexistent/sc.conf", &c, err, sizeof(err)), -ENOENT);
	cr_assert_str_eq(err, "/nonexistent/sc.conf: cannot open: No such file or directory");
}

Test(config, config_is_a_directory)
{
	snprintf(path, sizeof(path), "%s", dir);
	load_fails(-EISDIR, 0, "cannot read: Is a directory");
}

Test(config, tiny_error_buffer_is_truncated_not_overrun)
{
	char small[12];
	memset(small, 'x', sizeof(small));
	write_conf("[foo]\n");
	cr_assert_eq(sc_config_load(path, &c, small, 8), -EINVAL);
	cr_assert_eq(strlen(small), 7);
	cr_assert_eq(small[8], 'x');
}

/* ---- syntax ---- */

Test(config, syntax_error)
{
	write_conf(SIDECORE "this line has no equals sign\n");
	load_fails(-EINVAL, 3, "syntax error");
}

Test(config, first_error_in_the_file_is_reported)
{
	write_conf(SIDECORE "oops\nbudget = 0\n");
	load_fails(-EINVAL, 3, "syntax error");
	write_conf(SIDECORE "budget = 0\noops\n");
	load_fails(-ERANGE, 3, "budget = 0 is out of range");
	write_conf("[blk.a]\nsocket = /s\n[sidecore]\n");
	load_fails(-EINVAL, 1, "[blk.a] has no backing");
}

Test(config, unclosed_section_header)
{
	write_conf(SIDECORE "[blk.a\nsocket = /s\n");
	load_fails(-EINVAL, 3, "syntax error");
}

Test(config, line_too_long)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /%0300d\n", 0);
	load_fails(-E2BIG, 5, "line is longer than 198 characters");
}

Test(config, indented_line_continues_a_value)
{
	write_conf(SIDECORE "budget = 16\n  queues = 2\n");
	load_fails(-EINVAL, 4, "indented line continues the value of 'budget'");
}

Test(config, key_without_a_name)
{
	write_conf(SIDECORE "= 3\n");
	load_fails(-EINVAL, 3, "has no key");
}

/* ---- sections ---- */

Test(config, key_before_any_section)
{
	write_conf("cpus = 1\n[sidecore]\ncpus = 1\n");
	load_fails(-EINVAL, 1, "key 'cpus' comes before any section");
}

Test(config, unknown_section)
{
	write_conf(SIDECORE "[network]\n");
	load_fails(-EINVAL, 3, "unknown section [network]; sections are [sidecore], [blk.NAME] and [net.NAME]");
}

Test(config, unknown_section_type)
{
	write_conf(SIDECORE "[foo.x]\n");
	load_fails(-EINVAL, 3, "unknown section type 'foo' in [foo.x]");
}

Test(config, section_blk_without_a_name)
{
	write_conf(SIDECORE "[blk]\nsocket = /s\n");
	load_fails(-EINVAL, 3, "section [blk] has no device name");
}

Test(config, section_blk_dot_without_a_name)
{
	write_conf(SIDECORE "[blk.]\n");
	load_fails(-EINVAL, 3, "section [blk.] has no device name");
}

Test(config, device_name_with_bad_characters)
{
	write_conf(SIDECORE "[blk.a/b]\n");
	load_fails(-EINVAL, 3, "device name 'a/b' in [blk.a/b] is not");
}

Test(config, device_name_too_long)
{
	write_conf(SIDECORE "[blk.%064d]\n", 0);
	load_fails(-EINVAL, 3, "is not 1..63 letters");
}

Test(config, duplicate_device_name)
{
	write_dev("\n[blk.a]\nsocket = /t\n");
	load_fails(-EEXIST, 7, "[blk.a] is defined twice (first on line 3)");
}

Test(config, sidecore_section_twice)
{
	write_conf(SIDECORE "[sidecore]\nbudget = 4\n");
	load_fails(-EEXIST, 3, "[sidecore] appears twice (first on line 1)");
}

Test(config, too_many_devices)
{
	FILE *f = fopen(path, "w");
	fputs(SIDECORE, f);
	for (int i = 0; i < SC_CONFIG_MAX_DEVICES; i++)
		fprintf(f, "[blk.d%d]\nsocket = /s%d\nbacking = /b\n", i, i);
	fclose(f);
	load_ok();
	cr_assert_eq(c.nblk, SC_CONFIG_MAX_DEVICES, "64 fit");
	cr_assert_eq(c.blk[63].line, 3 + 63 * 3);
	f = fopen(path, "a");
	fputs("[blk.d64]\nsocket = /s64\nbacking = /b\n", f);
	fclose(f);
	load_fails(-E2BIG, 3 + 64 * 3, "[blk.d64] is device 65, more than the 64");
}

/* ---- keys ---- */

Test(config, unknown_key)
{
	write_conf(SIDECORE "[blk.disk0]\nsocket = /s\nbacking = /b\nqueus = 2\n");
	load_fails(-EINVAL, 6,
		   "unknown key 'queus' in [blk.disk0]; known keys: socket, backing, queues, queue_size, read_only, direct");
}

Test(config, unknown_key_in_sidecore)
{
	write_conf(SIDECORE "speed = 11\n");
	load_fails(-EINVAL, 3, "unknown key 'speed' in [sidecore]; known keys: cpus, idle_spin_us, budget");
}

Test(config, duplicate_key)
{
	write_conf("[sidecore]\ncpus = 1\ncpus = 2\n");
	load_fails(-EEXIST, 3, "'cpus' is set twice in [sidecore] (first on line 2)");
	write_dev("queues = 2\nqueues = 2\n");
	load_fails(-EEXIST, 7, "'queues' is set twice in [blk.a] (first on line 6)");
}

/* ---- numbers ---- */

Test(config, number_not_numeric)
{
	write_dev("queues = two\n");
	load_fails(-EINVAL, 6, "queues = 'two' is not a whole number; use a number in 1..64");
	write_dev("queues =\n");
	load_fails(-EINVAL, 6, "queues = '' is not a whole number");
}

Test(config, number_negative)
{
	write_conf(SIDECORE "idle_spin_us = -5\n");
	load_fails(-EINVAL, 3, "idle_spin_us = '-5' is not a whole number");
}

Test(config, number_with_trailing_junk)
{
	write_conf(SIDECORE "budget = 12x\n");
	load_fails(-EINVAL, 3, "budget = '12x' is not a whole number");
}

Test(config, number_overflow)
{
	write_dev("queues = 99999999999999999999999\n");
	load_fails(-ERANGE, 6, "queues = 99999999999999999999999 is out of range");
}

Test(config, queues_zero)
{
	write_dev("queues = 0\n");
	load_fails(-ERANGE, 6, "queues = 0 is out of range; use a number in 1..64");
}

Test(config, queues_65)
{
	write_dev("queues = 65\n");
	load_fails(-ERANGE, 6, "queues = 65 is out of range");
}

Test(config, queue_size_not_a_power_of_two)
{
	write_dev("queue_size = 100\n");
	load_fails(-EINVAL, 6, "queue_size = 100 is not a power of two");
}

Test(config, queue_size_below_64)
{
	write_dev("queue_size = 32\n");
	load_fails(-ERANGE, 6, "queue_size = 32 is out of range; use a number in 64..32768");
}

Test(config, queue_size_above_32768)
{
	write_dev("queue_size = 65536\n");
	load_fails(-ERANGE, 6, "queue_size = 65536 is out of range");
}

Test(config, budget_zero)
{
	write_conf(SIDECORE "budget = 0\n");
	load_fails(-ERANGE, 3, "budget = 0 is out of range; use a number in 1..1024");
}

Test(config, budget_1025)
{
	write_conf(SIDECORE "budget = 1025\n");
	load_fails(-ERANGE, 3, "budget = 1025 is out of range");
}

Test(config, turn_zero)
{
	write_conf(SIDECORE "turn_us = 0\n");
	load_fails(-ERANGE, 3, "turn_us = 0 is out of range; use a number in 1..1000000");
}

Test(config, turn_beyond_one_second)
{
	write_conf(SIDECORE "turn_us = 1000001\n");
	load_fails(-ERANGE, 3, "turn_us = 1000001 is out of range");
}

Test(config, idle_spin_beyond_ten_seconds)
{
	write_conf(SIDECORE "idle_spin_us = 10000001\n");
	load_fails(-ERANGE, 3, "idle_spin_us = 10000001 is out of range");
}

Test(config, rebalance_defaults)
{
	write_conf(SIDECORE);
	load_ok();
	cr_assert(c.rebalance);
	cr_assert_eq(c.rebalance_interval_ms, 1000);
	cr_assert_eq(c.rebalance_busy, 90);
	cr_assert_eq(c.rebalance_idle, 50);
	cr_assert_eq(c.rebalance_intervals, 3);
}

Test(config, rebalance_keys)
{
	write_conf(SIDECORE "rebalance = no\nrebalance_interval_ms = 250\nrebalance_busy = 80\nrebalance_idle = 20\n"
			    "rebalance_intervals = 5\n");
	load_ok();
	cr_assert_not(c.rebalance);
	cr_assert_eq(c.rebalance_interval_ms, 250);
	cr_assert_eq(c.rebalance_busy, 80);
	cr_assert_eq(c.rebalance_idle, 20);
	cr_assert_eq(c.rebalance_intervals, 5);
}

Test(config, rebalance_not_a_boolean)
{
	write_conf(SIDECORE "rebalance = sometimes\n");
	load_fails(-EINVAL, 3, "rebalance = 'sometimes' is not a boolean; use yes or no");
}

Test(config, rebalance_interval_below_100_ms)
{
	write_conf(SIDECORE "rebalance_interval_ms = 99\n");
	load_fails(-ERANGE, 3, "rebalance_interval_ms = 99 is out of range; use a number in 100..60000");
}

Test(config, rebalance_busy_above_100)
{
	write_conf(SIDECORE "rebalance_busy = 101\n");
	load_fails(-ERANGE, 3, "rebalance_busy = 101 is out of range; use a number in 2..100");
}

Test(config, rebalance_intervals_beyond_the_history)
{
	write_conf(SIDECORE "rebalance_intervals = 17\n");
	load_fails(-ERANGE, 3, "rebalance_intervals = 17 is out of range; use a number in 1..16");
}

Test(config, rebalance_idle_not_below_busy)
{
	write_conf(SIDECORE "rebalance_busy = 60\nrebalance_idle = 60\n");
	load_fails(-EINVAL, 4, "rebalance_idle = 60 is not below rebalance_busy = 60");
	/* The default idle (50) against a lower busy: the [sidecore] line. */
	write_conf(SIDECORE "rebalance_busy = 40\n");
	load_fails(-EINVAL, 1, "rebalance_idle = 50 is not below rebalance_busy = 40");
}

Test(config, bad_boolean)
{
	write_dev("read_only = maybe\n");
	load_fails(-EINVAL, 6, "read_only = 'maybe' is not a boolean; use yes or no");
}

/* ---- cpu lists ---- */

Test(config, cpu_list_open_range)
{
	write_conf("[sidecore]\ncpus = 1-\n");
	load_fails(-EINVAL, 2, "cpus = '1-': range '1-' has no end");
}

Test(config, cpu_list_backwards_range)
{
	write_conf("[sidecore]\ncpus = 3-1\n");
	load_fails(-EINVAL, 2, "range 3-1 runs backwards");
}

Test(config, cpu_list_not_a_number)
{
	write_conf("[sidecore]\ncpus = x\n");
	load_fails(-EINVAL, 2, "'x' is not a cpu number");
	write_conf("[sidecore]\ncpus = 1,2x\n");
	load_fails(-EINVAL, 2, "'2x' is not a cpu number or range");
}

Test(config, cpu_list_empty)
{
	write_conf("[sidecore]\ncpus =\n");
	load_fails(-EINVAL, 2, "cpus = '': the list is empty");
}

Test(config, cpu_list_empty_entry)
{
	write_conf("[sidecore]\ncpus = 1,,2\n");
	load_fails(-EINVAL, 2, "an entry is empty");
	write_conf("[sidecore]\ncpus = 1,\n");
	load_fails(-EINVAL, 2, "an entry is empty");
}

Test(config, cpu_list_duplicate_cpu)
{
	write_conf("[sidecore]\ncpus = 1-3,2\n");
	load_fails(-EEXIST, 2, "cpu 2 is listed twice");
}

Test(config, cpu_list_too_many_cpus)
{
	write_conf("[sidecore]\ncpus = 0-256\n");
	load_fails(-E2BIG, 2, "more than 256 cpus");
}

Test(config, cpu_number_too_big)
{
	write_conf("[sidecore]\ncpus = 65536\n");
	load_fails(-ERANGE, 2, "'65536' is beyond cpu 65535");
}

/* ---- what must be there ---- */

Test(config, missing_sidecore_section)
{
	write_conf("[blk.a]\nsocket = /s\nbacking = /b\n");
	load_fails(-EINVAL, 0, "no [sidecore] section; add one with cpus = LIST");
}

Test(config, missing_cpus)
{
	write_conf("\n[sidecore]\nbudget = 8\n");
	load_fails(-EINVAL, 2, "[sidecore] has no cpus");
	write_conf("[sidecore]\n");
	load_fails(-EINVAL, 1, "[sidecore] has no cpus");
}

Test(config, device_missing_socket)
{
	write_conf(SIDECORE "[blk.a]\nbacking = /b\n");
	load_fails(-EINVAL, 3, "[blk.a] has no socket; add socket = PATH");
	write_conf(SIDECORE "[blk.a]\n\n[blk.b]\nsocket = /s\nbacking = /b\n");
	load_fails(-EINVAL, 3, "[blk.a] has no socket");
}

Test(config, device_missing_backing)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /s\n");
	load_fails(-EINVAL, 3, "[blk.a] has no backing; add backing = PATH");
}

Test(config, socket_empty)
{
	write_conf(SIDECORE "[blk.a]\nsocket =\n");
	load_fails(-EINVAL, 4, "socket is empty in [blk.a]");
}

Test(config, socket_path_too_long)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /%0106d\nbacking = /b\n", 0);
	load_ok();
	cr_assert_eq(strlen(c.blk[0].socket), 107, "107 bytes fit");
	write_conf(SIDECORE "[blk.a]\nsocket = /%0107d\n", 0);
	load_fails(-ENAMETOOLONG, 4, "socket path is 108 bytes, longer than the 107");
}

/* ---- check_paths ---- */

Test(config, missing_backing_file)
{
	write_conf(SIDECORE "\n[blk.a]\nsocket = %s/a.sock\nbacking = %s/nope.img\n", dir, dir);
	paths_fail(-ENOENT, 4, "[blk.a] backing '");
	cr_assert(strstr(err, "/nope.img': No such file or directory; create it or fix the path"), "%s", err);
}

Test(config, backing_is_a_directory)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\n", dir, dir);
	paths_fail(-EINVAL, 3, "is a directory, not a regular file or block device");
}

Test(config, backing_not_writable)
{
	if (geteuid() == 0)
		skip_test("root may write a 0444 file, so access() cannot fail here");
	cr_assert_eq(chmod(disk, 0444), 0);
	write_dev("");
	paths_fail(-EACCES, 3, "is not writable (Permission denied); set read_only = yes");
}

Test(config, read_only_backing_that_is_not_writable_is_fine)
{
	cr_assert_eq(chmod(disk, 0444), 0);
	write_dev("read_only = yes\n");
	paths_ok();
}

Test(config, shared_writable_backing)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\nread_only = yes\n"
		   "[blk.b]\nsocket = %s/b.sock\nbacking = %s\nread_only = yes\n", dir, disk, dir, disk);
	paths_ok();
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\nread_only = yes\n"
		   "[blk.b]\nsocket = %s/b.sock\nbacking = %s/./disk.img\n", dir, disk, dir, dir);
	paths_fail(-EEXIST, 7, "is also [blk.a]'s (line 3), and one writes to it");
}

Test(config, socket_dir_missing)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/no/such/a.sock\nbacking = %s\n", dir, disk);
	paths_fail(-ENOENT, 3, "/no/such': No such file or directory; create it or fix the path");
}

Test(config, socket_dir_not_writable)
{
	if (geteuid() == 0)
		skip_test("root may write a 0555 directory, so access() cannot fail here; socket_dir_missing covers the path");
	char ro[160];
	snprintf(ro, sizeof(ro), "%s/ro", dir);
	cr_assert_eq(mkdir(ro, 0555), 0);
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\n", ro, disk);
	paths_fail(-EACCES, 3, "directory not writable (Permission denied)");
}

Test(config, socket_dir_is_a_file)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\n", disk, disk);
	paths_fail(-ENOTDIR, 3, "is not a directory");
}

Test(config, socket_path_is_a_regular_file)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s\nbacking = %s\n", disk2, disk);
	paths_fail(-EEXIST, 3, "exists and is not a socket");
}

Test(config, old_socket_is_fine)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/a.sock", dir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	write_dev("");
	paths_ok();
}

Test(config, two_devices_share_a_socket)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/s.sock\nbacking = %s\n"
		   "[blk.b]\nsocket = %s/s.sock\nbacking = %s\n", dir, disk, dir, disk2);
	paths_fail(-EEXIST, 6, "[blk.b] socket '");
	cr_assert(strstr(err, "is also [blk.a]'s (line 3); give each device its own"), "%s", err);
	write_conf(SIDECORE "[blk.a]\nsocket = %s/s.sock\nbacking = %s\n"
		   "[blk.b]\nsocket = %s/./s.sock\nbacking = %s\n", dir, disk, dir, disk2);
	paths_fail(-EEXIST, 6, "is also [blk.a]'s (line 3)");
}

Test(config, delay_us_is_a_bounded_number_of_microseconds)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\ndelay_us = 2500\n");
	load_ok();
	cr_assert_eq(c.blk[0].delay_ns, 2500000);
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\n");
	load_ok();
	cr_assert_eq(c.blk[0].delay_ns, 0, "off by default");
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\ndelay_us = 10000001\n");
	load_fails(-ERANGE, 6, "delay_us = 10000001 is out of range; use a number in 0..10000000");
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = /b\ndelay_us = 1ms\n");
	load_fails(-EINVAL, 6, "delay_us = '1ms' is not a whole number");
}

Test(config, ram_backing_takes_a_size_with_a_suffix_and_needs_no_file)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = ram:256M\n[blk.b]\nsocket = %s/b.sock\n"
		   "backing = ram:8192\nmmap = no\n", dir, dir);
	paths_ok();   /* nothing to stat, and two RAM disks share nothing */
	cr_assert_eq(c.blk[0].ram_bytes, 256ull << 20);
	cr_assert(c.blk[0].mmap, "mmap is on by default");
	cr_assert_eq(c.blk[1].ram_bytes, 8192);
	cr_assert(!c.blk[1].mmap);
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = ram:1024G\n");
	load_ok();
	cr_assert_eq(c.blk[0].ram_bytes, 1ull << 40);
	write_dev("");
	load_ok();
	cr_assert_eq(c.blk[0].ram_bytes, 0, "a path is not a RAM disk");
}

Test(config, ram_size_zero_is_refused)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = ram:0\n");
	load_fails(-ERANGE, 5, "backing = 'ram:0': size out of range; write ram:SIZE with SIZE in 4K..1024G");
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = ram:0M\n");
	load_fails(-ERANGE, 5, "backing = 'ram:0M': size out of range");
}

Test(config, ram_size_that_overflows_is_refused)
{
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = ram:1025G\n");
	load_fails(-ERANGE, 5, "backing = 'ram:1025G': size out of range");
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = ram:18014398509481984K\n");   /* 2^54 K: wraps in bytes */
	load_fails(-ERANGE, 5, "size out of range");
	write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = ram:99999999999999999999999999\n");
	load_fails(-ERANGE, 5, "size out of range");
}

Test(config, ram_size_with_a_garbage_suffix_is_refused)
{
	static const char *const bad[] = { "ram:256X", "ram:256MB", "ram:M", "ram:", "ram:-1M", "ram: 1M", "ram:1.5G", "ram:1000" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		char want[96];
		write_conf(SIDECORE "[blk.a]\nsocket = /s\nbacking = %s\n", bad[i]);
		snprintf(want, sizeof(want), "backing = '%s': not a size; write ram:SIZE", bad[i]);
		load_fails(-EINVAL, 5, want);
	}
}

Test(config, mmap_is_a_boolean)
{
	write_dev("mmap = sometimes\n");
	load_fails(-EINVAL, 6, "mmap = 'sometimes' is not a boolean; use yes or no");
}

/* ---- the plan's keys ---- */

Test(config, plan_keys_and_their_defaults)
{
	write_conf(SIDECORE "[blk.a]\nsocket = %s/a.sock\nbacking = %s\n", dir, disk);
	load_ok();
	cr_assert(!c.cpus_auto);
	cr_assert_eq(c.nguest_cpus, 0);
	cr_assert_eq(c.idle, SC_IDLE_ADAPTIVE);
	cr_assert_eq(c.iowq, SC_IOWQ_AUTO);
	cr_assert_eq(c.blk[0].nsidecores, 0, "auto");
	cr_assert_eq(c.blk[0].numa_node, -1, "auto");
	char want[160];
	snprintf(want, sizeof(want), "%s/sidecored.sock", dir);
	cr_assert_str_eq(c.stats_socket, want, "beside the first device's socket");

	write_conf("[sidecore]\ncpus = auto\ncount = 2\nguest_cpus = 0, 4-5\nidle = spin\niowq_cpus = 0,3\n"
		   "stats_socket = %s/st.sock\n[blk.a]\nsocket = %s/a.sock\nbacking = %s\nsidecore = 1,2\nnuma_node = 1\n",
		   dir, dir, disk);
	load_ok();
	cr_assert(c.cpus_auto);
	cr_assert_eq(c.count, 2);
	cr_assert_eq(c.nguest_cpus, 3);
	cr_assert(c.guest_cpus[0] == 0 && c.guest_cpus[1] == 4 && c.guest_cpus[2] == 5);
	cr_assert_eq(c.guest_cpus_line, 4);
	cr_assert_eq(c.idle, SC_IDLE_SPIN);
	cr_assert_eq(c.iowq, SC_IOWQ_LIST);
	cr_assert(c.niowq_cpus == 2 && c.iowq_cpus[1] == 3);
	snprintf(want, sizeof(want), "%s/st.sock", dir);
	cr_assert_str_eq(c.stats_socket, want);
	cr_assert(c.blk[0].nsidecores == 2 && c.blk[0].sidecores[1] == 2);
	cr_assert_eq(c.blk[0].sidecore_line, 11);
	cr_assert_eq(c.blk[0].numa_node, 1);
}

Test(config, stats_socket_none_turns_it_off)
{
	write_dev("");
	write_conf("[sidecore]\ncpus = 1\nstats_socket = none\n");
	load_ok();
	cr_assert_str_eq(c.stats_socket, "");
}

Test(config, no_devices_put_the_stats_socket_in_run_sidecore)
{
	write_conf("[sidecore]\ncpus = 1\n");
	load_ok();
	cr_assert_str_eq(c.stats_socket, "/run/sidecore/sidecored.sock");
}

Test(config, cpus_auto_without_count)
{
	write_conf("[sidecore]\ncpus = auto\n");
	load_fails(-EINVAL, 2, "cpus = auto needs count = N");
}

Test(config, count_without_cpus_auto)
{
	write_conf("[sidecore]\ncpus = 1\ncount = 2\n");
	load_fails(-EINVAL, 3, "count is only for cpus = auto");
}

Test(config, count_zero)
{
	write_conf("[sidecore]\ncpus = auto\ncount = 0\n");
	load_fails(-ERANGE, 3, "count = 0 is out of range");
}

Test(config, guest_cpus_not_a_list)
{
	write_conf("[sidecore]\ncpus = 1\nguest_cpus = zero\n");
	load_fails(-EINVAL, 3, "guest_cpus = 'zero': 'zero' is not a cpu number");
}

Test(config, guest_cpus_twice_in_the_list)
{
	write_conf("[sidecore]\ncpus = 1\nguest_cpus = 0,0\n");
	load_fails(-EEXIST, 3, "cpu 0 is listed twice");
}

Test(config, idle_policy_unknown)
{
	write_conf("[sidecore]\ncpus = 1\nidle = nap\n");
	load_fails(-EINVAL, 3, "idle = 'nap' is not a policy; use spin, adaptive or sleep");
}

Test(config, idle_policies_spelled_right)
{
	const char *names[] = { "adaptive", "spin", "sleep" };
	for (int i = 0; i < 3; i++) {
		write_conf("[sidecore]\ncpus = 1\nidle = %s\n", names[i]);
		load_ok();
		cr_assert_eq(c.idle, (enum sc_idle_policy)i, "%s", names[i]);
	}
}

Test(config, iowq_cpus_not_a_list)
{
	write_conf("[sidecore]\ncpus = 1\niowq_cpus = some\n");
	load_fails(-EINVAL, 3, "iowq_cpus = 'some': 'some' is not a cpu number; write auto, none, or a cpu list");
}

Test(config, iowq_cpus_none)
{
	write_conf("[sidecore]\ncpus = 1\niowq_cpus = none\n");
	load_ok();
	cr_assert_eq(c.iowq, SC_IOWQ_NONE);
}

Test(config, stats_socket_too_long)
{
	char longp[120];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = 0;
	longp[0] = '/';
	write_conf("[sidecore]\ncpus = 1\nstats_socket = %s\n", longp);
	load_fails(-ENAMETOOLONG, 3, "stats_socket path is 119 bytes");
}

Test(config, stats_socket_empty)
{
	write_conf("[sidecore]\ncpus = 1\nstats_socket =\n");
	load_fails(-EINVAL, 3, "stats_socket is empty");
}

Test(config, device_sidecore_not_a_list)
{
	write_dev("sidecore = first\n");
	load_fails(-EINVAL, 6, "sidecore = 'first': 'first' is not a cpu number; write auto or sidecore cpus");
}

Test(config, device_sidecore_auto)
{
	write_dev("sidecore = auto\n");
	load_ok();
	cr_assert_eq(c.blk[0].nsidecores, 0);
	cr_assert_eq(c.blk[0].sidecore_line, 6);
}

Test(config, device_numa_node_out_of_range)
{
	write_dev("numa_node = 1024\n");
	load_fails(-ERANGE, 6, "numa_node = 1024 is out of range; use a number in 0..1023");
}

Test(config, unknown_key_lists_the_new_keys_too)
{
	write_conf("[sidecore]\ncpus = 1\nspeed = 3\n");
	load_fails(-EINVAL, 3, "known keys: cpus, idle_spin_us, budget, control_timeout_ms, count, guest_cpus, idle, "
		   "iowq_cpus, stats_socket");
}

/* ---- [net.NAME] ---- */

Test(config, net_section_loads_with_defaults_and_values)
{
	write_conf(SIDECORE "[net.n0]\nsocket = %s/n0.sock\nport = net_tap0,iface=t0\n[net.n1]\nsocket = %s/n1.sock\n"
		   "port = net_ring0\nqueues = 4\nmac = 02:00:00:00:00:01\nmtu = 9000\nsidecore = 1\n", dir, dir);
	load_ok();
	cr_assert_eq(c.nnet, 2);
	cr_assert_str_eq(c.net[0].port, "net_tap0,iface=t0");
	cr_assert_eq(c.net[0].queues, 1);
	cr_assert_eq(c.net[0].mtu, 1500);
	cr_assert_eq(c.net[0].mac[0], 0x52);
	cr_assert_eq(c.net[1].queues, 4);
	cr_assert_eq(c.net[1].mac[5], 1);
	cr_assert_eq(c.net[1].mtu, 9000);
	cr_assert_eq(c.net[1].nsidecores, 1);
	paths_ok();
}

Test(config, net_section_errors_name_their_line)
{
	write_conf(SIDECORE "[net.n0]\nsocket = %s/n0.sock\n", dir);
	load_fails(-EINVAL, 3, "[net.n0] has no port; add port = VDEV");
	write_conf(SIDECORE "[net.n0]\nsocket = %s/n0.sock\nport = tap0\n", dir);
	load_fails(-EINVAL, 5, "port = 'tap0' is not a DPDK net vdev");
	write_conf(SIDECORE "[net.n0]\nport = net_null0\nmac = 52:54:00:12:34\n");
	load_fails(-EINVAL, 5, "mac = '52:54:00:12:34' is not a MAC address");
	write_conf(SIDECORE "[net.n0]\nport = net_null0\nmac = 01:54:00:12:34:56\n");
	load_fails(-EINVAL, 5, "is a multicast address");
	write_conf(SIDECORE "[net.n0]\nport = net_null0\nqueues = 17\n");
	load_fails(-ERANGE, 5, "queues = 17 is out of range; use a number in 1..16");
	write_conf(SIDECORE "[net.n0]\nport = net_null0\nmtu = 67\n");
	load_fails(-ERANGE, 5, "mtu = 67 is out of range");
	write_conf(SIDECORE "[net.n0]\nport = net_null0\nspeed = 10\n");
	load_fails(-EINVAL, 5, "unknown key 'speed' in [net.n0]; known keys: socket, port,");
	write_conf(SIDECORE "[blk.d]\nsocket = %s/d.sock\nbacking = %s\n[net.d]\n", dir, disk);
	load_fails(-EEXIST, 6, "[net.d] is defined twice (first on line 3)");
}

Test(config, net_socket_shared_with_a_disk_is_refused)
{
	write_conf(SIDECORE "[blk.d]\nsocket = %s/d.sock\nbacking = %s\n[net.n]\nsocket = %s/d.sock\nport = net_null0\n",
		   dir, disk, dir);
	paths_fail(-EEXIST, 6, "[net.n] socket");
}

/* ---- the vIOMMU keys of a disk ---- */

Test(config, iommu_keys_and_their_defaults)
{
	write_dev("");
	load_ok();
	cr_assert_not(c.blk[0].iommu.optimistic, "strict by default");
	cr_assert_eq(c.blk[0].iommu.window_ms, 2);
	cr_assert_eq(c.blk[0].iommu.iotlb_entries, 65536);
	cr_assert_eq(c.blk[0].iommu.iotlb_miss_ms, 3000);
	write_dev("iommu_teardown = optimistic\niommu_window_ms = 5\niotlb_entries = 1024\niotlb_miss_ms = 250\n");
	load_ok();
	cr_assert(c.blk[0].iommu.optimistic);
	cr_assert_eq(c.blk[0].iommu.window_ms, 5);
	cr_assert_eq(c.blk[0].iommu.iotlb_entries, 1024);
	cr_assert_eq(c.blk[0].iommu.iotlb_miss_ms, 250);
	write_dev("iommu_teardown = strict\n");
	load_ok();
	cr_assert_not(c.blk[0].iommu.optimistic);
}

Test(config, iommu_teardown_unknown_mode)
{
	write_dev("iommu_teardown = lazy\n");
	load_fails(-EINVAL, 6, "iommu_teardown = 'lazy' is not a mode; use strict or optimistic");
}

Test(config, iommu_window_out_of_range)
{
	write_dev("iommu_teardown = optimistic\niommu_window_ms = 0\n");
	load_fails(-ERANGE, 7, "iommu_window_ms = 0 is out of range; use a number in 1..1000");
	write_dev("iommu_teardown = optimistic\niommu_window_ms = 1001\n");
	load_fails(-ERANGE, 7, "iommu_window_ms = 1001 is out of range; use a number in 1..1000");
	write_dev("iommu_teardown = optimistic\niommu_window_ms = 2ms\n");
	load_fails(-EINVAL, 7, "iommu_window_ms = '2ms' is not a whole number");
}

Test(config, iommu_window_without_optimistic_teardown)
{
	write_dev("iommu_window_ms = 5\n");
	load_fails(-EINVAL, 6, "iommu_window_ms is only for iommu_teardown = optimistic in [blk.a]");
}

Test(config, iommu_isolation)
{
	write_dev("");
	load_ok();
	cr_assert_not(c.blk[0].iommu.isolation, "off by default");
	write_dev("iommu_isolation = yes\n");
	load_ok();
	cr_assert(c.blk[0].iommu.isolation);
	write_dev("iommu_isolation = no\n");
	load_ok();
	cr_assert_not(c.blk[0].iommu.isolation);
}

Test(config, iommu_isolation_not_a_boolean)
{
	write_dev("iommu_isolation = strict\n");
	load_fails(-EINVAL, 6, "iommu_isolation = 'strict' is not a boolean; use yes or no");
}

/* The pages of dying entries stay mapped until their window ends (test_iotlb's isolated_optimistic_*). */
Test(config, iommu_isolation_with_optimistic_teardown_is_accepted)
{
	write_dev("iommu_teardown = optimistic\niommu_window_ms = 20\niommu_isolation = yes\n");
	load_ok();
	cr_assert(c.blk[0].iommu.isolation);
	cr_assert(c.blk[0].iommu.optimistic);
	cr_assert_eq(c.blk[0].iommu.window_ms, 20);
}

Test(config, iotlb_entries_out_of_range)
{
	write_dev("iotlb_entries = 0\n");
	load_fails(-ERANGE, 6, "iotlb_entries = 0 is out of range; use a number in 1..65536");
	write_dev("iotlb_entries = 65537\n");
	load_fails(-ERANGE, 6, "iotlb_entries = 65537 is out of range; use a number in 1..65536");
}

Test(config, iotlb_miss_ms_out_of_range)
{
	write_dev("iotlb_miss_ms = 9\n");
	load_fails(-ERANGE, 6, "iotlb_miss_ms = 9 is out of range; use a number in 10..600000");
	write_dev("iotlb_miss_ms = soon\n");
	load_fails(-EINVAL, 6, "iotlb_miss_ms = 'soon' is not a whole number");
}

Test(config, iommu_key_given_twice)
{
	write_dev("iotlb_entries = 10\niotlb_entries = 20\n");
	load_fails(-EEXIST, 7, "'iotlb_entries' is set twice in [blk.a] (first on line 6); keep one");
}
