/* SPDX-License-Identifier: MIT */
#include "runtime/vu_server.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "guestmem/guestmem.h"
#include "runtime/vhost_user.h"

#define PROTOCOL_FEATURES                                                                        \
	((1ull << VHOST_USER_PROTOCOL_F_MQ) | (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |        \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIG) | (1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE) | \
	 (1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |                                        \
	 (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) | (1ull << VHOST_USER_PROTOCOL_F_STATUS))

struct vring {
	uint32_t num;
	uint16_t base;
	bool addr_set;
	bool enabled;
	bool started;
	struct sc_vu_vring_addr addr;
	int kick_fd, call_fd, err_fd;
};

/* Where the front end's addresses (ring addresses are its virtual ones) fall in guest memory. */
struct uva_map {
	uint64_t uva, gpa, size;
};

struct sc_vu_server {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int listen_fd, conn_fd;
	const struct sc_vu_device_ops *ops;
	void *ctx;
	unsigned nvrings;

	uint64_t features, protocol_features;
	uint8_t status;
	struct sc_mem mem;
	struct uva_map map[SC_MEM_MAX_REGIONS];
	unsigned nmap;
	struct vring vrings[SC_VU_MAX_VRINGS];

	/* inflight tracking: a memfd the VMM keeps across our restarts */
	uint8_t *inflight;
	size_t inflight_size;
	uint16_t inflight_nq, inflight_qsize;
};

static void vring_init(struct vring *v)
{
	*v = (struct vring){ .kick_fd = -1, .call_fd = -1, .err_fd = -1 };
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int sc_vu_server_create(const char *path, const struct sc_vu_device_ops *ops, void *ctx,
			struct sc_vu_server **out, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sc_vu_server *s;
	struct stat st;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: socket path longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	if (ops->num_queues == 0 || ops->num_queues > SC_VU_MAX_VRINGS) {
		snprintf(err, errlen, "%s: %u queues, the server supports 1..%u", path, ops->num_queues, SC_VU_MAX_VRINGS);
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	strcpy(s->path, path);
	strcpy(sa.sun_path, path);
	s->ops = ops;
	s->ctx = ctx;
	s->nvrings = ops->num_queues;
	s->conn_fd = -1;
	sc_mem_init(&s->mem);
	for (unsigned i = 0; i < SC_VU_MAX_VRINGS; i++)
		vring_init(&s->vrings[i]);

	/* A socket file left by a previous run is ours to replace; anything else is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "%s: exists and is not a socket; remove it or choose another path", path);
			free(s);
			return -EEXIST;
		}
		unlink(path);
	}
	s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listen_fd < 0 || bind(s->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(s->listen_fd, 1) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot listen: %s%s", path, strerror(e),
			 e == EACCES || e == ENOENT ? "; check that the directory exists and is writable" : "");
		if (s->listen_fd >= 0)
			close(s->listen_fd);
		free(s);
		return -e;
	}
	*out = s;
	return 0;
}

int sc_vu_server_listen_fd(const struct sc_vu_server *s) { return s->listen_fd; }
int sc_vu_server_conn_fd(const struct sc_vu_server *s) { return s->conn_fd; }

unsigned sc_vu_server_started(const struct sc_vu_server *s)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nvrings; i++)
		n += s->vrings[i].started;
	return n;
}

/* ---- vrings ---- */

static bool uva_to_gpa(const struct sc_vu_server *s, uint64_t uva, uint64_t *gpa)
{
	for (unsigned i = 0; i < s->nmap; i++)
		if (uva - s->map[i].uva < s->map[i].size) {
			*gpa = s->map[i].gpa + (uva - s->map[i].uva);
			return true;
		}
	return false;
}

/* Stop a started vring: the device detaches it and finishes its requests first. */
static void vring_stop(struct sc_vu_server *s, unsigned idx)
{
	struct vring *v = &s->vrings[idx];
	if (!v->started)
		return;
	v->base = s->ops->queue_stop(s->ctx, idx);
	v->started = false;
}

/* Start a vring once it is fully described. */
static int vring_maybe_start(struct sc_vu_server *s, unsigned idx, char *err, size_t errlen)
{
	struct vring *v = &s->vrings[idx];
	bool need_enable = s->features & (1ull << SC_VU_F_PROTOCOL_FEATURES);
	struct sc_vq_config cfg;

	if (v->started || !v->num || !v->addr_set || v->kick_fd < 0 || !s->mem.nregions ||
	    (need_enable && !v->enabled))
		return 0;
	cfg = (struct sc_vq_config){
		.size = v->num, .features = s->features, .last_avail = v->base,
		.xlate = sc_mem_xlate(&s->mem), .call_fd = v->call_fd, .kick_fd = v->kick_fd,
	};
	if (s->inflight && idx < s->inflight_nq && v->num == s->inflight_qsize)
		cfg.inflight = (struct sc_vq_inflight *)(s->inflight + idx * sc_vq_inflight_bytes(v->num));
	if (!uva_to_gpa(s, v->addr.desc_user_addr, &cfg.desc_addr) ||
	    !uva_to_gpa(s, v->addr.avail_user_addr, &cfg.avail_addr) ||
	    !uva_to_gpa(s, v->addr.used_user_addr, &cfg.used_addr)) {
		snprintf(err, errlen, "vring %u: a ring address is outside the memory table", idx);
		return -EFAULT;
	}
	int ret = s->ops->queue_start(s->ctx, idx, &cfg);
	if (ret < 0) {
		snprintf(err, errlen, "vring %u: the device could not start it: %s", idx, strerror(-ret));
		return ret;
	}
	v->started = true;
	return 0;
}

static void stop_all(struct sc_vu_server *s, bool *was_started)
{
	for (unsigned i = 0; i < s->nvrings; i++) {
		if (was_started)
			was_started[i] = s->vrings[i].started;
		vring_stop(s, i);
	}
}

static int restart(struct sc_vu_server *s, const bool *was_started, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->nvrings; i++)
		if (was_started[i]) {
			int ret = vring_maybe_start(s, i, err, errlen);
			if (ret < 0)
				return ret;
		}
	return 0;
}

/* Forget the connection's device state: vrings, memory, features. */
static void reset_device(struct sc_vu_server *s)
{
	stop_all(s, NULL);
	for (unsigned i = 0; i < s->nvrings; i++) {
		struct vring *v = &s->vrings[i];
		close_fd(&v->kick_fd);
		close_fd(&v->call_fd);
		close_fd(&v->err_fd);
		vring_init(v);
	}
	sc_mem_fini(&s->mem);
	s->nmap = 0;
	s->features = s->protocol_features = 0;
	s->status = 0;
	if (s->inflight)
		munmap(s->inflight, s->inflight_size);
	s->inflight = NULL;
}

/* Map an inflight region of nq queues of qsize entries from fd (taken). */
static int inflight_map(struct sc_vu_server *s, int fd, uint64_t size, uint64_t offset, uint16_t nq,
			uint16_t qsize, char *err, size_t errlen)
{
	if (size < (uint64_t)nq * sc_vq_inflight_bytes(qsize) || size > (1ull << 30)) {
		close(fd);
		snprintf(err, errlen, "inflight area of %llu bytes does not fit %u queues of %u entries",
			 (unsigned long long)size, nq, qsize);
		return -EINVAL;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
	int e = errno;
	close(fd);   /* the mapping keeps the memory; the VMM keeps its own fd */
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "mapping the inflight area: %s", strerror(e));
		return -e;
	}
	if (s->inflight)
		munmap(s->inflight, s->inflight_size);
	s->inflight = p;
	s->inflight_size = size;
	s->inflight_nq = nq;
	s->inflight_qsize = qsize;
	return 0;
}

/* ---- memory ---- */

static int mem_add(struct sc_vu_server *s, const struct sc_vu_region *r, int fd, char *err, size_t errlen)
{
	int ret;

	if (s->nmap == SC_MEM_MAX_REGIONS) {
		close(fd);
		snprintf(err, errlen, "more than %u memory regions", SC_MEM_MAX_REGIONS);
		return -ENOSPC;
	}
	ret = sc_mem_add_fd(&s->mem, r->guest_phys_addr, r->memory_size, fd, r->mmap_offset, SC_PERM_RW);
	if (ret < 0) {
		snprintf(err, errlen, "mapping region [0x%llx, +0x%llx): %s", (unsigned long long)r->guest_phys_addr,
			 (unsigned long long)r->memory_size, strerror(-ret));
		return ret;
	}
	s->map[s->nmap++] = (struct uva_map){ r->userspace_addr, r->guest_phys_addr, r->memory_size };
	return 0;
}

static int mem_remove(struct sc_vu_server *s, const struct sc_vu_region *r)
{
	for (unsigned i = 0; i < s->nmap; i++)
		if (s->map[i].gpa == r->guest_phys_addr && s->map[i].size == r->memory_size) {
			s->map[i] = s->map[--s->nmap];
			return sc_mem_remove(&s->mem, r->guest_phys_addr);
		}
	return -ENOENT;
}

/* ---- messages ---- */

/*
 * Act on a checked message. Returns 0, or a negative errno with err set
 * (-ENOTSUP: answered, the connection goes on; anything else drops it).
 * *replied says the handler sent the reply itself.
 */
static int handle(struct sc_vu_server *s, struct sc_vu_msg *m, bool *replied, char *err, size_t errlen)
{
	bool was[SC_VU_MAX_VRINGS];
	struct vring *v = NULL;
	uint64_t u = m->payload.u64;
	int ret = 0;

	switch (m->hdr.request) {
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_GET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
		v = &s->vrings[m->payload.state.index];
		break;
	case VHOST_USER_SET_VRING_ADDR:
		v = &s->vrings[m->payload.addr.index];
		break;
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		v = &s->vrings[u & VHOST_USER_VRING_IDX_MASK];
		break;
	}

	switch (m->hdr.request) {
	case VHOST_USER_GET_FEATURES: {
		uint64_t f = s->ops->features | (1ull << SC_VU_F_PROTOCOL_FEATURES);
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &f, sizeof(f));
	}
	case VHOST_USER_SET_FEATURES:
		if (u & ~(s->ops->features | (1ull << SC_VU_F_PROTOCOL_FEATURES))) {
			snprintf(err, errlen, "SET_FEATURES 0x%llx asks for features never offered", (unsigned long long)u);
			return -EINVAL;
		}
		s->features = u;
		return 0;
	case VHOST_USER_GET_PROTOCOL_FEATURES: {
		uint64_t f = PROTOCOL_FEATURES;
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &f, sizeof(f));
	}
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		s->protocol_features = u & PROTOCOL_FEATURES;
		return 0;
	case VHOST_USER_SET_OWNER:
		return 0;
	case VHOST_USER_RESET_OWNER:
	case VHOST_USER_RESET_DEVICE:
		reset_device(s);
		return 0;
	case VHOST_USER_GET_QUEUE_NUM: {
		uint64_t n = s->nvrings;
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &n, sizeof(n));
	}
	case VHOST_USER_GET_MAX_MEM_SLOTS: {
		uint64_t n = SC_MEM_MAX_REGIONS;
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &n, sizeof(n));
	}
	case VHOST_USER_SET_MEM_TABLE:
		/* The rings may point into the old table: stop them, swap, restart. */
		stop_all(s, was);
		sc_mem_fini(&s->mem);
		s->nmap = 0;
		for (unsigned i = 0; i < m->payload.memory.nregions; i++) {
			ret = mem_add(s, &m->payload.memory.regions[i], m->fds[i], err, errlen);
			m->fds[i] = -1;   /* taken (or closed) by mem_add */
			if (ret < 0) {
				for (unsigned k = i + 1; k < m->payload.memory.nregions; k++)
					close_fd(&m->fds[k]);
				return ret;
			}
		}
		m->nfds = 0;
		return restart(s, was, err, errlen);
	case VHOST_USER_ADD_MEM_REG:
		stop_all(s, was);
		ret = mem_add(s, &m->payload.mem_reg.region, m->fds[0], err, errlen);
		m->fds[0] = -1;
		m->nfds = 0;
		return ret < 0 ? ret : restart(s, was, err, errlen);
	case VHOST_USER_REM_MEM_REG:
		stop_all(s, was);
		ret = mem_remove(s, &m->payload.mem_reg.region);
		if (ret < 0)
			snprintf(err, errlen, "REM_MEM_REG of a region that is not in the table");
		return ret < 0 ? ret : restart(s, was, err, errlen);
	case VHOST_USER_SET_VRING_NUM:
		if (v->started) {
			snprintf(err, errlen, "SET_VRING_NUM on running vring %u", m->payload.state.index);
			return -EBUSY;
		}
		if (s->ops->max_queue_size && m->payload.state.num > s->ops->max_queue_size) {
			snprintf(err, errlen, "vring %u: queue size %u is above this disk's queue_size %u",
				 m->payload.state.index, m->payload.state.num, s->ops->max_queue_size);
			return -EINVAL;
		}
		v->num = m->payload.state.num;
		return 0;
	case VHOST_USER_SET_VRING_ADDR:
		if (v->started) {
			snprintf(err, errlen, "SET_VRING_ADDR on running vring %u", m->payload.addr.index);
			return -EBUSY;
		}
		v->addr = m->payload.addr;
		v->addr_set = true;
		return vring_maybe_start(s, m->payload.addr.index, err, errlen);
	case VHOST_USER_SET_VRING_BASE:
		if (v->started) {
			snprintf(err, errlen, "SET_VRING_BASE on running vring %u", m->payload.state.index);
			return -EBUSY;
		}
		v->base = (uint16_t)m->payload.state.num;
		return 0;
	case VHOST_USER_GET_VRING_BASE: {
		/* Stop first: the answer is where the sidecore really left the ring. */
		unsigned idx = m->payload.state.index;
		vring_stop(s, idx);
		struct sc_vu_vring_state st = { idx, v->base };
		close_fd(&v->kick_fd);   /* the ring is stopped until a new kick fd comes */
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &st, sizeof(st));
	}
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR: {
		unsigned idx = (unsigned)(u & VHOST_USER_VRING_IDX_MASK);
		int *slot = m->hdr.request == VHOST_USER_SET_VRING_KICK ? &v->kick_fd
			    : m->hdr.request == VHOST_USER_SET_VRING_CALL ? &v->call_fd : &v->err_fd;
		/* A new fd under a running ring: stop it, swap, start again. */
		vring_stop(s, idx);
		close_fd(slot);
		if (m->nfds) {
			*slot = m->fds[0];
			m->nfds = 0;
		}
		return vring_maybe_start(s, idx, err, errlen);
	}
	case VHOST_USER_SET_VRING_ENABLE: {
		unsigned idx = m->payload.state.index;
		v->enabled = m->payload.state.num;
		if (!v->enabled)
			vring_stop(s, idx);
		return vring_maybe_start(s, idx, err, errlen);
	}
	case VHOST_USER_GET_CONFIG: {
		struct sc_vu_config c = m->payload.config;
		ret = s->ops->get_config ? s->ops->get_config(s->ctx, c.region, c.offset, c.size) : -ENOTSUP;
		if (ret < 0) {
			snprintf(err, errlen, "GET_CONFIG: %s", strerror(-ret));
			return ret;
		}
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &c, 12 + c.size);
	}
	case VHOST_USER_GET_INFLIGHT_FD: {
		/* We lay it out (vqueue's format); the VMM only keeps it and gives it back. */
		struct sc_vu_inflight in = m->payload.inflight;
		uint64_t size = (uint64_t)in.num_queues * sc_vq_inflight_bytes(in.queue_size);
		int fd = sc_mem_memfd_create("sidecore-inflight", size);
		if (fd < 0) {
			snprintf(err, errlen, "GET_INFLIGHT_FD: memfd: %s", strerror(-fd));
			return fd;
		}
		int send_fd = dup(fd);
		ret = inflight_map(s, fd, size, 0, in.num_queues, in.queue_size, err, errlen);
		if (ret < 0) {
			close(send_fd);
			return ret;
		}
		struct sc_vu_inflight reply = { size, 0, in.num_queues, in.queue_size };
		*replied = true;
		ret = sc_vu_send(s->conn_fd, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_REPLY, &reply, 24, send_fd);
		close(send_fd);
		return ret;
	}
	case VHOST_USER_SET_INFLIGHT_FD: {
		struct sc_vu_inflight in = m->payload.inflight;
		ret = inflight_map(s, m->fds[0], in.mmap_size, in.mmap_offset, in.num_queues, in.queue_size,
				   err, errlen);
		m->fds[0] = -1;
		m->nfds = 0;
		return ret;
	}
	case VHOST_USER_SET_STATUS:
		s->status = (uint8_t)u;
		return 0;
	case VHOST_USER_GET_STATUS: {
		uint64_t st = s->status;
		*replied = true;
		return sc_vu_reply(s->conn_fd, m, &st, sizeof(st));
	}
	default:
		snprintf(err, errlen, "%s is not supported by this back end", sc_vu_request_name(m->hdr.request));
		return -ENOTSUP;
	}
}

static void drop_connection(struct sc_vu_server *s)
{
	/* A front end that goes away may come back: its device is stopped, not lost. */
	reset_device(s);
	close_fd(&s->conn_fd);
}

static int handle_message(struct sc_vu_server *s)
{
	struct sc_vu_msg m;
	char err[256] = "";
	bool replied = false;
	int ret = sc_vu_msg_recv(s->conn_fd, s->nvrings, &m, err, sizeof(err));

	if (ret == 0) {
		drop_connection(s);
		return 1;
	}
	if (ret == -ENOTSUP || ret > 0) {
		if (ret > 0)
			ret = handle(s, &m, &replied, err, sizeof(err));
		sc_vu_msg_close_fds(&m);   /* whatever the handler did not take */
		/* REPLY_ACK: the front end asked to hear how it went. */
		if (!replied && (m.hdr.flags & VHOST_USER_NEED_REPLY) &&
		    (s->protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK))) {
			uint64_t ack = ret < 0 ? (uint64_t)-ret : 0;
			sc_vu_reply(s->conn_fd, &m, &ack, sizeof(ack));
		}
		if (ret < 0)
			fprintf(stderr, "sidecore: %s: %s\n", s->path, err);
		/* An unsupported request is answered; anything else that failed ends the connection. */
		if (ret < 0 && ret != -ENOTSUP)
			drop_connection(s);
		return 1;
	}
	fprintf(stderr, "sidecore: %s: %s; dropping the connection\n", s->path, err);
	drop_connection(s);
	return 1;
}

int sc_vu_server_poll(struct sc_vu_server *s, int timeout_ms)
{
	struct pollfd p = { .fd = s->conn_fd >= 0 ? s->conn_fd : s->listen_fd, .events = POLLIN };
	int n = poll(&p, 1, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		return 0;
	if (s->conn_fd < 0) {
		s->conn_fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		return s->conn_fd < 0 ? -errno : 1;
	}
	if (p.revents & (POLLIN | POLLHUP | POLLERR))
		return handle_message(s);
	return 0;
}

void sc_vu_server_destroy(struct sc_vu_server *s)
{
	if (!s)
		return;
	drop_connection(s);
	close(s->listen_fd);
	unlink(s->path);
	free(s);
}
