/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guestmem/guestmem.h"

static struct sc_mem m;

static void setup(void) { sc_mem_init(&m); }
static void teardown(void) { sc_mem_fini(&m); }

TestSuite(guestmem, .init = setup, .fini = teardown, .timeout = 10);

static void add(uint64_t gpa, uint64_t size)
{
	int fd = sc_mem_memfd_create("t", size);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&m, gpa, size, fd, 0, SC_PERM_RW), 0);
}

Test(guestmem, translate_inside_a_region)
{
	add(0x1000, 0x4000);
	uint8_t *p = sc_mem_translate(&m, 0x1000, 0x4000, SC_PERM_RW);
	cr_assert_not_null(p);
	cr_assert_eq((uint8_t *)sc_mem_translate(&m, 0x2000, 16, SC_PERM_READ), p + 0x1000);
}

Test(guestmem, translate_refuses_out_of_table_straddle_and_wrap)
{
	add(0x1000, 0x4000);
	cr_assert_null(sc_mem_translate(&m, 0x0, 16, SC_PERM_READ), "below");
	cr_assert_null(sc_mem_translate(&m, 0x5000, 1, SC_PERM_READ), "just past the end");
	cr_assert_null(sc_mem_translate(&m, 0x4ff0, 32, SC_PERM_READ), "straddles the end");
	cr_assert_null(sc_mem_translate(&m, 0x1000, UINT64_MAX, SC_PERM_READ), "huge length");
	struct iovec iov[4];
	cr_assert_eq(sc_mem_translate_iov(&m, UINT64_MAX - 8, 32, SC_PERM_READ, iov, 4), -EFAULT, "wraps");
	cr_assert_eq(sc_mem_translate_iov(&m, 0x4ff0, 32, SC_PERM_READ, iov, 4), -EFAULT, "straddles");
}

Test(guestmem, range_across_adjacent_regions_splits)
{
	add(0x10000, 0x1000);
	add(0x11000, 0x1000);
	struct iovec iov[4];
	cr_assert_eq(sc_mem_translate_iov(&m, 0x10f00, 0x200, SC_PERM_READ, iov, 4), 2);
	cr_assert_eq(iov[0].iov_len, 0x100);
	cr_assert_eq(iov[1].iov_len, 0x100);
	cr_assert_eq(sc_mem_translate_iov(&m, 0x10f00, 0x200, SC_PERM_READ, iov, 1), -ENOBUFS);
	cr_assert_null(sc_mem_translate(&m, 0x10f00, 0x200, SC_PERM_READ), "not contiguous in one region");
	cr_assert_eq(sc_mem_translate_iov(&m, 0x10f00, 0, SC_PERM_READ, iov, 4), 0);
}

Test(guestmem, overlap_and_bad_ranges_are_refused)
{
	add(0x10000, 0x2000);
	int fd = sc_mem_memfd_create("t", 0x1000);
	cr_assert_eq(sc_mem_add_fd(&m, 0x11000, 0x1000, fd, 0, SC_PERM_RW), -EEXIST);
	fd = sc_mem_memfd_create("t", 0x2000);
	cr_assert_eq(sc_mem_add_fd(&m, 0xf000, 0x1001, fd, 0, SC_PERM_RW), -EEXIST);
	fd = sc_mem_memfd_create("t", 0x1000);
	cr_assert_eq(sc_mem_add_fd(&m, 0x20000, 0, fd, 0, SC_PERM_RW), -EINVAL, "size 0");
	fd = sc_mem_memfd_create("t", 0x2000);
	cr_assert_eq(sc_mem_add_fd(&m, UINT64_MAX - 0xfff, 0x2000, fd, 0, SC_PERM_RW), -EINVAL, "gpa wraps");
	fd = sc_mem_memfd_create("t", 0x1000);
	cr_assert_eq(sc_mem_add_fd(&m, 0x20000, 0x1000, fd, UINT64_MAX - 10, SC_PERM_RW), -EINVAL, "offset wraps");
	cr_assert_eq(m.nregions, 1, "failed adds leave the table as it was");
}

Test(guestmem, table_full)
{
	for (unsigned i = 0; i < SC_MEM_MAX_REGIONS; i++)
		add(0x100000ull * (i + 1), 0x1000);
	int fd = sc_mem_memfd_create("t", 0x1000);
	cr_assert_eq(sc_mem_add_fd(&m, 0x10000000, 0x1000, fd, 0, SC_PERM_RW), -ENOSPC);
}

Test(guestmem, remove_at_run_time)
{
	add(0x1000, 0x1000);
	add(0x3000, 0x1000);
	cr_assert_eq(sc_mem_remove(&m, 0x1000), 0);
	cr_assert_null(sc_mem_translate(&m, 0x1000, 1, SC_PERM_READ));
	cr_assert_not_null(sc_mem_translate(&m, 0x3000, 1, SC_PERM_READ));
	cr_assert_eq(sc_mem_remove(&m, 0x1000), -ENOENT);
	add(0x1000, 0x1000);
	cr_assert_eq(m.regions[0].gpa, 0x1000, "kept sorted");
}

Test(guestmem, permissions)
{
	void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_eq(sc_mem_add_hva(&m, 0x1000, 4096, ro, SC_PERM_READ), 0);
	struct iovec iov;
	cr_assert_eq(sc_mem_translate_iov(&m, 0x1000, 16, SC_PERM_READ, &iov, 1), 1);
	cr_assert_eq(sc_mem_translate_iov(&m, 0x1000, 16, SC_PERM_WRITE, &iov, 1), -EPERM);
	cr_assert_null(sc_mem_translate(&m, 0x1000, 16, SC_PERM_WRITE));
	sc_mem_fini(&m);
	munmap(ro, 4096);
}

Test(guestmem, unaligned_fd_offset)
{
	int fd = sc_mem_memfd_create("t", 0x3000);
	uint8_t *all = mmap(NULL, 0x3000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	all[0x1234] = 0x5a;
	cr_assert_eq(sc_mem_add_fd(&m, 0x10000, 0x1000, dup(fd), 0x1234, SC_PERM_RW), 0);
	uint8_t *p = sc_mem_translate(&m, 0x10000, 1, SC_PERM_READ);
	cr_assert_eq(*p, 0x5a);
	munmap(all, 0x3000);
	close(fd);
}

Test(guestmem, memfd_is_shared_with_another_process)
{
	int fd = sc_mem_memfd_create("shared", 0x2000);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd(&m, 0x0, 0x2000, dup(fd), 0, SC_PERM_RW), 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* The peer maps the same fd on its own, as a VMM would. */
		char *p = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			_exit(1);
		strcpy(p + 0x1800, "from the peer");
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_str_eq((char *)sc_mem_translate(&m, 0x1800, 14, SC_PERM_READ), "from the peer");
	close(fd);
}

Test(guestmem, memfd_cannot_shrink_under_a_peer)
{
	int fd = sc_mem_memfd_create("sealed", 0x2000);
	cr_assert_eq(ftruncate(fd, 0x1000), -1);
	cr_assert_eq(errno, EPERM);
	close(fd);
}

/* A front end's fd shorter than the range it claims: touching the rest would SIGBUS. */
static int file_of(uint64_t bytes)
{
	char path[] = "/tmp/sidecore-guestmem-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	cr_assert_eq(ftruncate(fd, (off_t)bytes), 0);
	return fd;
}

Test(guestmem, fd_shorter_than_the_region_is_refused)
{
	int fd = file_of(0x4000);
	cr_assert_eq(sc_mem_add_fd(&m, 0x1000, 0x8000, fd, 0, SC_PERM_RW), -ERANGE);
	cr_assert_eq(m.nregions, 0);
	cr_assert_eq(fcntl(fd, F_GETFD), -1, "the fd was taken and closed");
	add(0x1000, 0x4000);   /* the table still works */
	cr_assert_not_null(sc_mem_translate(&m, 0x1000, 0x4000, SC_PERM_RW));
}

Test(guestmem, fd_offset_past_the_end_of_the_file_is_refused)
{
	cr_assert_eq(sc_mem_add_fd(&m, 0x1000, 0x1000, file_of(0x4000), 0x4000, SC_PERM_RW), -ERANGE);
	cr_assert_eq(sc_mem_add_fd(&m, 0x1000, 0x2000, file_of(0x4000), 0x3000, SC_PERM_RW), -ERANGE);
	cr_assert_eq(m.nregions, 0);
}

Test(guestmem, fd_exactly_as_large_as_the_region_is_accepted)
{
	cr_assert_eq(sc_mem_add_fd(&m, 0x1000, 0x3000, file_of(0x4000), 0x1000, SC_PERM_RW), 0);
	cr_assert_not_null(sc_mem_translate(&m, 0x3fff, 1, SC_PERM_WRITE));
}

/* Can this process read p? write(2) from it says, without a fault: EFAULT if not. */
static bool readable(const void *p)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	ssize_t n = write(fds[1], p, 1);
	close(fds[0]);
	close(fds[1]);
	return n == 1;
}

/* An isolated region (sc_mem_add_fd_isolated): host addresses, but guest memory only where granted. */
Test(guestmem, isolated_region_maps_only_what_is_granted)
{
	int fd = sc_mem_memfd_create("t", 0x10000);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "abcd", 4, 0x3000), 4);
	cr_assert_eq(sc_mem_add_fd_isolated(&m, 0x100000, 0x10000, fd, 0, SC_PERM_RW), 0);
	uint8_t *p = sc_mem_translate(&m, 0x103000, 4, SC_PERM_READ);
	cr_assert_not_null(p, "the table translates as before");
	cr_assert_not(readable(p), "nothing is mapped before a grant");
	cr_assert_eq(sc_mem_grant(&m, 0x103000, 0x1000), 0);
	cr_assert(readable(p));
	cr_assert_eq(memcmp(p, "abcd", 4), 0, "the fd's page, at its offset");
	cr_assert_not(readable(p + 0x1000), "the next page was not granted");
	cr_assert_not(readable(p - 1), "nor the one before");
	cr_assert_eq(sc_mem_revoke(&m, 0x103000, 0x1000), 0);
	cr_assert_not(readable(p), "revoked");
}

Test(guestmem, isolated_grant_of_bad_ranges_is_refused)
{
	add(0x1000, 0x4000);   /* not isolated: its pages are all mapped already */
	cr_assert_eq(sc_mem_grant(&m, 0x1000, 0x1000), -EFAULT);
	int fd = sc_mem_memfd_create("t", 0x10000);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd_isolated(&m, 0x100000, 0x8000, fd, 0x800, SC_PERM_RW), 0);
	cr_assert_eq(sc_mem_grant(&m, 0x100000, 0x1000), -ERANGE, "fd offset 0x800 is not a page's");
	cr_assert_eq(sc_mem_grant(&m, 0x100800, 0x800), -ERANGE, "a page of the fd, but half a page long");
	cr_assert_eq(sc_mem_grant(&m, 0x100800, 0x1000), 0, "fd offset 0x1000: whole pages");
	cr_assert_eq(sc_mem_grant(&m, 0x107800, 0x1000), -EFAULT, "past the region's end");
	cr_assert_eq(sc_mem_grant(&m, 0x200000, 0x1000), -EFAULT, "outside every region");
	cr_assert_eq(sc_mem_revoke(&m, 0x100000, 0x1000), -ERANGE);
}

/* What the fault handler asks (sc_mem_isolated_at): an isolated region's reservation, while it lives. */
Test(guestmem, isolated_reservations_are_known_to_the_fault_handler_while_they_live)
{
	add(0x1000, 0x4000);   /* not isolated */
	cr_assert_not(sc_mem_isolated_at(sc_mem_translate(&m, 0x1000, 1, SC_PERM_READ)));
	int fd = sc_mem_memfd_create("t", 0x10000);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sc_mem_add_fd_isolated(&m, 0x100000, 0x10000, fd, 0, SC_PERM_RW), 0);
	uint8_t *p = sc_mem_translate(&m, 0x100000, 0x10000, SC_PERM_READ);
	cr_assert(sc_mem_isolated_at(p));
	cr_assert(sc_mem_isolated_at(p + 0xffff));
	cr_assert_not(sc_mem_isolated_at(p + 0x10000), "the byte past the reservation");
	cr_assert_eq(sc_mem_grant(&m, 0x100000, 0x1000), 0);
	cr_assert(sc_mem_isolated_at(p), "a granted page is still the reservation's");
	cr_assert_not(sc_mem_isolated_at(NULL));
	cr_assert_eq(sc_mem_remove(&m, 0x100000), 0);
	cr_assert_not(sc_mem_isolated_at(p), "gone with its region");
	/* Its slot is free again: regions come and go without running out. */
	for (int i = 0; i < 5000; i++) {
		fd = sc_mem_memfd_create("t", 0x1000);
		cr_assert_eq(sc_mem_add_fd_isolated(&m, 0x100000, 0x1000, fd, 0, SC_PERM_RW), 0, "round %d", i);
		cr_assert_eq(sc_mem_remove(&m, 0x100000), 0);
	}
}
