/* SPDX-License-Identifier: MIT */
/*
 * The test harness every suite shares (liburing's test/helpers.h): guest
 * memory, a split ring in it with the driver side (driver/) and the device
 * side's config (vqueue/), and a vhost-user front end (harness_vu.c, for
 * suites that link the runtime) with a disk behind a served socket.
 *
 * Guest memory and rings (harness.c):
 *
 *   struct t_guest g;
 *   uint64_t buf_gpa;
 *   t_guest_init(&g, 0x100000, 4 << 20);             // memfd guest memory
 *   t_ring(&g, &dvq, 16, features, &cfg);            // driver side in dvq; device side: sc_vq_init(&vq, &cfg)
 *   uint8_t *buf = t_alloc(&g, 4096, 16, &buf_gpa);  // request buffers
 *   ... sc_drv_vq_add(&dvq, segs, out, in); device poll; sc_drv_vq_get_used(&dvq, ...)
 *   t_guest_fini(&g);
 *
 * A device on a poller: t_poller_start(cpu, spin, "name", &dev.pq, &p), or call the
 * device's poll function from the test thread, as the device suites do.
 *
 * These functions return errors rather than asserting, so they suit any
 * test framework; tests assert on the results.
 */
#ifndef SC_TESTS_HARNESS_H
#define SC_TESTS_HARNESS_H

#include <stdint.h>

#include "driver/driver.h"
#include "guestmem/guestmem.h"
#include "polling/polling.h"
#include "vqueue/vqueue.h"

/* One guest memory region, read-write for the device, and a bump allocator in it. */
struct t_guest {
	struct sc_mem mem;   /* the table to translate through (sc_mem_xlate(&g->mem)) */
	uint64_t gpa;        /* first guest address of the region */
	uint64_t size;       /* its bytes */
	uint8_t *base;       /* host address of gpa */
	uint64_t next;       /* first guest address t_alloc has not handed out */
};

/*
 * Create size bytes of memfd guest memory at guest address gpa (both
 * page-aligned), zero-filled. The allocator starts at gpa. Returns 0 or a
 * negative errno (from sc_mem_memfd_create or sc_mem_add_fd).
 */
int t_guest_init(struct t_guest *g, uint64_t gpa, uint64_t size);

/* Unmap and close the guest memory. Pointers into it are dead afterwards. */
void t_guest_fini(struct t_guest *g);

/* Host address of guest address gpa, or NULL if [gpa, gpa + len) is not all inside the region. */
void *t_ptr(const struct t_guest *g, uint64_t gpa, uint64_t len);

/*
 * Hand out len bytes aligned to align (a power of two), never reused; the
 * memory is still zero unless something wrote there. Returns the host
 * address and sets *gpa, or returns NULL if the region is full.
 */
void *t_alloc(struct t_guest *g, uint64_t len, uint64_t align, uint64_t *gpa);

/*
 * Both sides of a fresh ring of size entries in g, in one call: allocate it
 * (page-aligned), lay out the driver side in dvq and fill the device side's
 * cfg as t_vq_config does. Returns 0, -ENOMEM if g is full, or
 * sc_drv_vq_init's error. The driver side then adds chains
 * (sc_drv_vq_add), kicks when sc_drv_vq_kick_needed says so, and reaps (sc_drv_vq_get_used).
 */
int t_ring(struct t_guest *g, struct sc_drv_vq *dvq, uint16_t size, uint64_t features, struct sc_vq_config *cfg);

/*
 * Add another size bytes of memfd guest memory at gpa (page-aligned, not
 * overlapping) to g's table; t_alloc still hands out only the first
 * region. Returns 0 or a negative errno.
 */
int t_guest_add(struct t_guest *g, uint64_t gpa, uint64_t size);

/*
 * Lay out a driver ring of size entries at guest address gpa (64-aligned,
 * sc_drv_vq_ring_bytes(size) bytes inside the region, e.g. from t_alloc).
 * features: the negotiated bits, as for sc_drv_vq_init. Returns 0, -EFAULT
 * if the ring is not inside the region, or sc_drv_vq_init's error.
 */
int t_ring_init(struct t_guest *g, struct sc_drv_vq *dvq, uint64_t gpa, uint16_t size,
		 uint64_t features);

/*
 * The device-side config for the ring dvq: its size and three addresses,
 * features, translation through g's table, last_avail 0, no call, kick or err
 * fd (-1). Tests change fields afterwards as they need.
 */
void t_vq_config(struct t_guest *g, const struct sc_drv_vq *dvq, uint64_t features,
		  struct sc_vq_config *cfg);

/*
 * A device on a poller: create a sidecore called name, pinned to cpu, that
 * spins idle_spin_ns (0: not at all) before it sleeps on its kick fds, and
 * attach q. Returns
 * 0 or sc_poller_create's / sc_poller_attach's error (nothing is left
 * running then). sc_poller_destroy stops it and lets go of q. Inline, so
 * suites that do not link polling/ do not need it.
 */
static inline int t_poller_start(int cpu, uint64_t idle_spin_ns, const char *name, struct sc_pollq *q,
				 struct sc_poller **out)
{
	struct sc_poller_config pc = { .cpu = cpu, .idle_spin_ns = idle_spin_ns, .name = name };
	int ret = sc_poller_create(&pc, out);

	if (ret < 0)
		return ret;
	ret = sc_poller_attach(*out, q);
	if (ret < 0)
		sc_poller_destroy(*out);
	return ret;
}

/*
 * ---- vhost-user front end and disks (harness_vu.c; suites that link the runtime) ----
 * Disks served by sc_vu_server on their own control threads, and front ends
 * written here against the protocol (raw sockets, memfd guest memory, one
 * split ring from the driver library) that a test can make misbehave at any
 * step. Every helper asserts with Criterion; waits are bounded.
 */

#include <stdbool.h>

#include "runtime/vu_blk.h"
#include "runtime/vu_msg.h"

#define T_MEM (4u << 20)      /* front-end guest memory */
#define T_QSIZE 64
#define T_DISK (1u << 20)     /* backing file size */
#define T_HDR_GPA 0x100000    /* request headers; the ring is at GPA 0 */
#define T_DATA_GPA 0x200000   /* 4 KiB data buffers */

/* A disk behind a vhost-user socket, served by its own control thread. */
struct t_disk {
	char dir[64], sock[96], img[96];
	struct sc_blk_backend be;
	struct sc_vu_blk dev;
	struct sc_vu_server *srv;
	struct sc_poller *poller;   /* the device keeps a pointer to its poller array */
};

/* Create a disk (name for the log) whose server uses timeout_ms, on poller p, backed by a file under /tmp. */
void t_disk_open(struct t_disk *d, struct sc_poller *p, int timeout_ms, const char *name);
/*
 * The same with the backing file (and socket) in a directory under base,
 * e.g. /var/tmp (not tmpfs: io_uring I/O); direct opens it O_DIRECT, so
 * every read and write goes through io_uring.
 */
void t_disk_open_in(struct t_disk *d, struct sc_poller *p, int timeout_ms, const char *name, const char *base,
		    bool direct);
/* Read 4 KiB of the backing file img at sector into buf. */
void t_disk_read(const char *img, uint64_t sector, uint8_t *buf);
void t_disk_close(struct t_disk *d);

/* A front end: its socket, guest memory in fd (a sealed memfd unless a test swaps it), one ring. */
struct t_fe {
	int sock, memfd, kick, call, err;   /* err: the vring err eventfd the back end signals when the ring breaks */
	uint8_t *mem;
	struct sc_drv_vq vq;
	unsigned slot;   /* next request buffer */
};

/* Connect a raw socket to path; reads on it give up after 5 s. */
int t_connect(const char *path);

/* Send one message, asserting it went out. */
void t_send(int sock, uint32_t req, uint32_t flags, const void *payload, uint32_t size, int fd);
/* Read the reply to req into buf: exactly size bytes of payload. */
void t_reply(int sock, uint32_t req, void *buf, uint32_t size);
uint64_t t_get_u64(int sock, uint32_t req);
/* Send req with value v and NEED_REPLY; return the ack (0: done, else an errno). */
uint64_t t_set_u64_ack(int sock, uint32_t req, uint64_t v);

/* Connect and make guest memory; nothing sent yet. */
void t_fe_open(struct t_fe *fe, const char *path);
/*
 * Swap the front end's guest memory (after t_fe_open, before the memory
 * table) for a plain file in dir, unlinked: it cannot be sealed, so the
 * front end can shrink it under the back end (ftruncate(fe->memfd, ...)).
 */
void t_fe_use_file(struct t_fe *fe, const char *dir);
/* GET/SET_FEATURES, protocol features (REPLY_ACK included), SET_OWNER. */
void t_fe_negotiate(struct t_fe *fe);
/* SET_MEM_TABLE with the whole guest memory as one region from fd; returns the ack. */
uint64_t t_fe_mem_table(struct t_fe *fe, int fd);
/* Describe and enable vring 0 (a fresh ring at GPA 0) with the front end's kick, call and err eventfds; asserts the ack. */
void t_fe_ring(struct t_fe *fe);
/* The same for the ring already in memory, resuming at base (a front end that came back). */
void t_fe_ring_resume(struct t_fe *fe, uint16_t base);
/*
 * The same with the rings' addresses given as mem_addr plus their offset
 * in fe->mem: t_fe_ring_resume gives the front end's own pointers; with
 * ACCESS_PLATFORM they are IOVAs (mem_addr: the IOVA of guest address 0).
 */
void t_fe_ring_at(struct t_fe *fe, uint16_t base, uint64_t mem_addr);
/* GET_VRING_BASE of vring 0: stops it; returns where the back end left it. */
uint16_t t_fe_get_base(struct t_fe *fe);
/* open + negotiate + memory + ring: a well-behaved front end with a live ring. */
void t_fe_start(struct t_fe *fe, const char *path);
/* One 4 KiB request through the ring at sector; returns the status byte (asserts a completion in 5 s). */
int t_fe_io(struct t_fe *fe, uint32_t type, uint64_t sector);
/* Make one 4 KiB request available and kick; returns the GPA of its status byte. No wait. */
uint64_t t_fe_post(struct t_fe *fe, uint32_t type, uint64_t sector);
/* Wait up to ms for n used entries; returns how many came. */
unsigned t_fe_wait(struct t_fe *fe, unsigned n, int ms);
/* WRITE_ZEROES of nsect sectors at sector (one segment); returns the status byte. */
int t_fe_write_zeroes(struct t_fe *fe, uint64_t sector, uint32_t nsect);
/* The err eventfd's count after waiting up to ms for it (0: it never fired). */
uint64_t t_fe_err_count(struct t_fe *fe, int ms);
/* Write a fresh pattern at sector, check the backing file holds it, read it back through the ring. */
void t_fe_verified_io(struct t_fe *fe, const char *img, uint64_t sector);
void t_fe_close(struct t_fe *fe);
/* Close the connection only (memory and ring stay); t_fe_reconnect makes a new one and resumes at base. */
void t_fe_disconnect(struct t_fe *fe);
void t_fe_reconnect(struct t_fe *fe, const char *path, uint16_t base);

/*
 * ---- vhost-user IOTLB (QEMU's vhost-user.rst, "IOMMU support") and inflight areas ----
 * The front end plays the vIOMMU: it maps IOVAs with UPDATEs and answers
 * the back end's MISS messages, which come on the back-end channel.
 */

/*
 * GET/SET_FEATURES (with ACCESS_PLATFORM if access_platform), every
 * protocol feature offered (asserting IOTLB, BACKEND_REQ, INFLIGHT_SHMFD and
 * REPLY_ACK are), SET_OWNER and a back-end channel (a socketpair):
 * returns our end of it.
 */
int t_fe_negotiate_iotlb(struct t_fe *fe, bool access_platform);
/* One IOTLB message with NEED_REPLY on sock; returns the ack (0, or the errno of the refusal). */
uint64_t t_iotlb(int sock, uint8_t type, uint64_t iova, uint64_t size, uint64_t uaddr, uint8_t perm);
/* The next MISS on the back-end channel within ms into *t; false if none came. */
bool t_next_miss(int backend, int ms, struct sc_vu_iotlb *t);
/* GET_INFLIGHT_FD for nq queues of T_QSIZE entries: returns the area's fd, its description in *got. */
int t_get_inflight(int sock, uint16_t nq, struct sc_vu_inflight *got);
/* SET_INFLIGHT_FD of the area in fd as in describes it, with NEED_REPLY; returns the ack. */
uint64_t t_set_inflight(int sock, const struct sc_vu_inflight *in, int fd);

/*
 * Send GET_FEATURES on sock and never read a reply, until the server has
 * taken none for 200 ms (its reply send is blocked) or closed the
 * connection. Returns how many went out.
 */
unsigned t_flood_unread(int sock);

/* Did the server close sock within ms (data before the end is read and dropped)? */
bool t_wait_eof(int sock, int ms);

/* A fresh well-behaved front end does verified I/O on each disk given (NULL ends the list). */
void t_alive(struct t_disk *a, struct t_disk *b);

int64_t t_now_ms(void);

/* Capture this process's stderr (the back end's log lines) into a file until t_log_end. */
struct t_log {
	int saved, fd;
	char path[64];
};
void t_log_begin(struct t_log *l);
/* Restore stderr (copying what was captured to it) and return the text captured; free() it. */
char *t_log_end(struct t_log *l);
/* How many times needle occurs in text. */
unsigned t_count(const char *text, const char *needle);

#endif
