/* SPDX-License-Identifier: MIT */
/*
 * Reading and checking vhost-user messages. Each request type declares its
 * payload size, how many fds it carries, what they must be and whether it
 * names a vring, in one table (SC_VU_REQUESTS in vu_msg.h); the value
 * checks that depend on the payload follow it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/vu_msg.h"

struct rule {
	const char *name;
	enum sc_vu_size_rule size_rule;
	uint32_t size;            /* SC_VU_SZ_EXACT: the payload size */
	uint8_t fds_min, fds_max;
	enum sc_vu_vring_rule vring;
	enum sc_vu_fd_kind fd_kind;
};

#define RULE(req, sr, sz, fmin, fmax, vr, fk, rings) \
	[SC_VHOST_USER_##req] = { #req, SC_VU_SZ_##sr, sz, fmin, fmax, SC_VU_VRING_##vr, SC_VU_FD_##fk },
static const struct rule rules[SC_VHOST_USER_REQUEST_MAX] = { SC_VU_REQUESTS(RULE) };
#undef RULE

/* Requests the protocol defines that this back end does not take (they get -ENOTSUP). */
static const char *const unsupported_names[SC_VHOST_USER_REQUEST_MAX] = {
	[6] = "SET_LOG_BASE", [7] = "SET_LOG_FD", [19] = "SEND_RARP", [20] = "NET_SET_MTU",
	[23] = "SET_VRING_ENDIAN",
	[26] = "CREATE_CRYPTO_SESSION", [27] = "CLOSE_CRYPTO_SESSION", [28] = "POSTCOPY_ADVISE",
	[29] = "POSTCOPY_LISTEN", [30] = "POSTCOPY_END", [33] = "GPU_SET_SOCKET", [35] = "VRING_KICK",
};

const char *sc_vu_request_name(uint32_t request)
{
	if (request < SC_VHOST_USER_REQUEST_MAX && rules[request].name)
		return rules[request].name;
	if (request < SC_VHOST_USER_REQUEST_MAX && unsupported_names[request])
		return unsupported_names[request];
	return "unknown";
}

void sc_vu_msg_close_fds(struct sc_vu_msg *m)
{
	for (unsigned i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

/* Refuse m: say why, close what it brought. */
static int refuse(struct sc_vu_msg *m, int err, char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int refuse(struct sc_vu_msg *m, int err, char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(buf, len, "vhost-user %s (%u): ", sc_vu_request_name(m->hdr.request), m->hdr.request);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < len)
		vsnprintf(buf + n, len - (size_t)n, fmt, ap);
	va_end(ap);
	sc_vu_msg_close_fds(m);
	return err;
}

/* A region must not wrap in any of its three address spaces. */
static bool region_ok(const struct sc_vu_region *r)
{
	uint64_t end;
	return r->memory_size != 0 &&
	       !__builtin_add_overflow(r->guest_phys_addr, r->memory_size - 1, &end) &&
	       !__builtin_add_overflow(r->userspace_addr, r->memory_size - 1, &end) &&
	       !__builtin_add_overflow(r->mmap_offset, r->memory_size - 1, &end);
}

static bool regions_overlap(const struct sc_vu_region *a, const struct sc_vu_region *b)
{
	/* Inclusive ends cannot overflow: region_ok checked them. */
	return a->guest_phys_addr <= b->guest_phys_addr + (b->memory_size - 1) &&
	       b->guest_phys_addr <= a->guest_phys_addr + (a->memory_size - 1);
}

int sc_vu_msg_check(struct sc_vu_msg *m, unsigned nvrings, char *err, size_t errlen)
{
	uint32_t req = m->hdr.request, size = m->hdr.size, index = 0;
	const struct rule *r;

	if (req >= SC_VHOST_USER_REQUEST_MAX || !rules[req].name)
		return refuse(m, -ENOTSUP, err, errlen, "not supported by this back end");
	r = &rules[req];

	/* Size first: everything below reads the payload. */
	switch (r->size_rule) {
	case SC_VU_SZ_EXACT:
		if (size != r->size)
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes, expected %u", size, r->size);
		break;
	case SC_VU_SZ_MEM_TABLE:
		if (size < 8)
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes, shorter than its region count", size);
		if (m->payload.memory.nregions > SC_VU_MAX_MEM_REGIONS)
			return refuse(m, -EINVAL, err, errlen, "%u memory regions, at most %u", m->payload.memory.nregions,
				      SC_VU_MAX_MEM_REGIONS);
		if (size != 8 + m->payload.memory.nregions * sizeof(struct sc_vu_region))
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes does not hold %u regions", size,
				      m->payload.memory.nregions);
		break;
	case SC_VU_SZ_CONFIG:
		if (size < 12 || size > sizeof(struct sc_vu_config))
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes, expected 12..%zu", size,
				      sizeof(struct sc_vu_config));
		/* The window must lie inside the config space and match the payload; no overflow in the sum. */
		if (m->payload.config.offset > SC_VU_CONFIG_SPACE ||
		    m->payload.config.size > SC_VU_CONFIG_SPACE - m->payload.config.offset)
			return refuse(m, -EINVAL, err, errlen, "config window [%u, +%u) outside the %u-byte config space",
				      m->payload.config.offset, m->payload.config.size, SC_VU_CONFIG_SPACE);
		if (size != 12 + m->payload.config.size)
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes for a %u-byte config window", size,
				      m->payload.config.size);
		break;
	}

	/* fds: SET_VRING_* carry one unless they say "no fd"; a memory table one per region. */
	unsigned want_min = r->fds_min, want_max = r->fds_max;
	if (r->vring == SC_VU_VRING_FILE)
		want_min = want_max = (m->payload.u64 & SC_VHOST_USER_VRING_NOFD) ? 0 : 1;
	else if (r->size_rule == SC_VU_SZ_MEM_TABLE)
		want_min = want_max = m->payload.memory.nregions;
	if (m->nfds < want_min || m->nfds > want_max) {
		if (want_min == want_max)
			return refuse(m, -EBADF, err, errlen, "carries %u file descriptors, expected %u", m->nfds, want_min);
		return refuse(m, -EBADF, err, errlen, "carries %u file descriptors, expected %u to %u", m->nfds,
			      want_min, want_max);
	}

	/* The vring index, in the one place every vring message passes. */
	switch (r->vring) {
	case SC_VU_VRING_STATE: index = m->payload.state.index; break;
	case SC_VU_VRING_ADDR: index = m->payload.addr.index; break;
	case SC_VU_VRING_FILE:
		if (m->payload.u64 & ~(uint64_t)(SC_VHOST_USER_VRING_IDX_MASK | SC_VHOST_USER_VRING_NOFD))
			return refuse(m, -EINVAL, err, errlen, "unknown bits in 0x%llx", (unsigned long long)m->payload.u64);
		index = (uint32_t)(m->payload.u64 & SC_VHOST_USER_VRING_IDX_MASK);
		break;
	case SC_VU_VRING_NONE: break;
	}
	if (r->vring != SC_VU_VRING_NONE && index >= nvrings)
		return refuse(m, -ERANGE, err, errlen, "vring %u, the device has %u", index, nvrings);

	/* Values. */
	switch (req) {
	case SC_VHOST_USER_SET_VRING_NUM: {
		uint32_t num = m->payload.state.num;
		if (num == 0 || (num & (num - 1)) || num > SC_VU_MAX_QUEUE_SIZE)
			return refuse(m, -EINVAL, err, errlen, "queue size %u is not a power of two in 1..%u", num,
				      SC_VU_MAX_QUEUE_SIZE);
		break;
	}
	case SC_VHOST_USER_SET_VRING_BASE:
		if (m->payload.state.num > UINT16_MAX)
			return refuse(m, -EINVAL, err, errlen, "ring base %u does not fit 16 bits", m->payload.state.num);
		break;
	case SC_VHOST_USER_SET_VRING_ENABLE:
		if (m->payload.state.num > 1)
			return refuse(m, -EINVAL, err, errlen, "enable flag %u is not 0 or 1", m->payload.state.num);
		break;
	case SC_VHOST_USER_SET_MEM_TABLE:
		for (uint32_t i = 0; i < m->payload.memory.nregions; i++) {
			const struct sc_vu_region *a = &m->payload.memory.regions[i];
			if (!region_ok(a))
				return refuse(m, -EINVAL, err, errlen, "region %u is empty or wraps the address space", i);
			for (uint32_t j = 0; j < i; j++)
				if (regions_overlap(a, &m->payload.memory.regions[j]))
					return refuse(m, -EINVAL, err, errlen, "regions %u and %u overlap in guest memory", j, i);
		}
		break;
	case SC_VHOST_USER_ADD_MEM_REG:
	case SC_VHOST_USER_REM_MEM_REG:
		if (!region_ok(&m->payload.mem_reg.region))
			return refuse(m, -EINVAL, err, errlen, "region is empty or wraps the address space");
		break;
	case SC_VHOST_USER_SET_INFLIGHT_FD:
	case SC_VHOST_USER_GET_INFLIGHT_FD: {
		const struct sc_vu_inflight *in = &m->payload.inflight;
		uint16_t qs = in->queue_size;
		if (in->num_queues == 0 || in->num_queues > nvrings || qs == 0 || (qs & (qs - 1)) ||
		    qs > SC_VU_MAX_QUEUE_SIZE)
			return refuse(m, -EINVAL, err, errlen, "inflight area for %u queues of %u entries (device has %u vrings)",
				      in->num_queues, qs, nvrings);
		break;
	}
	default:
		break;
	}
	return 0;
}

/* ---- the fds a message brings ---- */

/* What /proc says fd is ("anon_inode:[eventfd]", "/memfd:name (deleted)"), for checks and log lines. */
static void fd_link(int fd, char *buf, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, buf, len - 1);
	if (n <= 0)
		snprintf(buf, len, "unknown: %s unreadable, mount /proc", path);
	else
		buf[n] = '\0';
}

/* Memory to map: a regular file covering [offset, offset + size); a memfd sealed against shrinking. */
static int check_mem_fd(struct sc_vu_msg *m, int fd, const char *what, uint64_t offset, uint64_t size, char *err,
			size_t errlen)
{
	char link[128];
	struct stat st;
	uint64_t end;

	fd_link(fd, link, sizeof(link));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return refuse(m, -EBADFD, err, errlen, "%s fd is not a regular file or memfd ('%s'); pass shared memory", what,
			      link);
	if (__builtin_add_overflow(offset, size, &end) || (uint64_t)st.st_size < end)
		return refuse(m, -ENXIO, err, errlen,
			      "%s fd holds %llu bytes, less than the %llu (offset %llu + size %llu) it claims", what,
			      (unsigned long long)st.st_size, (unsigned long long)end, (unsigned long long)offset,
			      (unsigned long long)size);
	/*
	 * A memfd that can be sealed must be: shrunk later, it would fault
	 * under a sidecore. One created without MFD_ALLOW_SEALING (DPDK's
	 * --no-huge memory) can never be sealed, like a plain file: it is
	 * taken as a file is, and a fault on it is vqueue's to contain.
	 */
	if (strncmp(link, "/memfd:", 7) == 0) {
		int seals = fcntl(fd, F_GET_SEALS);
		if (seals < 0 || !(seals & (F_SEAL_SHRINK | F_SEAL_SEAL)))
			return refuse(m, -EPERM, err, errlen,
				      "%s memfd is not sealed against shrinking; add F_SEAL_SHRINK (QEMU: "
				      "memory-backend-memfd with seal=on, its default)", what);
	}
	return 0;
}

int sc_vu_msg_check_fds(struct sc_vu_msg *m, char *err, size_t errlen)
{
	uint32_t req = m->hdr.request;
	char link[128];
	int ret = 0;

	if (req >= SC_VHOST_USER_REQUEST_MAX || !rules[req].name)
		return 0;
	switch (rules[req].fd_kind) {
	case SC_VU_FD_NONE:
	case SC_VU_FD_IGNORED:
		break;
	case SC_VU_FD_EVENT:
		/* A pipe or socket could block or SIGPIPE the sidecore that signals it. */
		for (unsigned i = 0; i < m->nfds; i++) {
			fd_link(m->fds[i], link, sizeof(link));
			if (strcmp(link, "anon_inode:[eventfd]") != 0)
				return refuse(m, -EBADFD, err, errlen, "vring %u: fd is '%s', not an eventfd",
					      (unsigned)(m->payload.u64 & SC_VHOST_USER_VRING_IDX_MASK), link);
		}
		break;
	case SC_VU_FD_MEM:
		if (req == SC_VHOST_USER_SET_MEM_TABLE) {
			for (unsigned i = 0; i < m->nfds && ret == 0; i++) {
				const struct sc_vu_region *r = &m->payload.memory.regions[i];
				char what[32];
				snprintf(what, sizeof(what), "region %u", i);
				ret = check_mem_fd(m, m->fds[i], what, r->mmap_offset, r->memory_size, err, errlen);
			}
		} else {
			const struct sc_vu_region *r = &m->payload.mem_reg.region;
			ret = check_mem_fd(m, m->fds[0], "region", r->mmap_offset, r->memory_size, err, errlen);
		}
		break;
	case SC_VU_FD_SOCKET: {
		/* The channel we send MISS on: a pipe or a file would block or fill. */
		struct stat st;
		int type = 0;
		socklen_t len = sizeof(type);
		fd_link(m->fds[0], link, sizeof(link));
		if (fstat(m->fds[0], &st) < 0 || !S_ISSOCK(st.st_mode) ||
		    getsockopt(m->fds[0], SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
			return refuse(m, -EBADFD, err, errlen, "fd is '%s', not a stream socket", link);
		break;
	}
	case SC_VU_FD_INFLIGHT:
		ret = check_mem_fd(m, m->fds[0], "inflight", m->payload.inflight.mmap_offset,
				   m->payload.inflight.mmap_size, err, errlen);
		break;
	}
	return ret;
}

/* ---- the socket ---- */

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Wait until sock has events, up to deadline (ms on CLOCK_MONOTONIC, < 0:
 * none). 0, -ETIMEDOUT, -ECANCELED (stop_fd readable) or -errno.
 */
static int wait_sock(int sock, short events, int64_t deadline, int stop_fd)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = sock, .events = events }, { .fd = stop_fd, .events = POLLIN } };
		int left = -1;
		if (deadline >= 0) {
			int64_t d = deadline - now_ms();
			if (d <= 0)
				return -ETIMEDOUT;
			left = d > 60000 ? 60000 : (int)d;
		}
		int n = poll(p, stop_fd >= 0 ? 2 : 1, left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0 && p[1].revents)
			return -ECANCELED;
		if (n > 0)
			return 0;   /* ready, or an error the next call reports */
	}
}

/* Take the fds a recvmsg brought; false if there were more than a message may carry. */
static bool take_fds(struct sc_vu_msg *m, struct msghdr *mh)
{
	bool ok = !(mh->msg_flags & MSG_CTRUNC);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (unsigned i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (m->nfds < SC_VU_MAX_FDS) {
				m->fds[m->nfds++] = fd;
			} else {
				close(fd);
				ok = false;
			}
		}
	}
	return ok;
}

/*
 * Read len bytes into buf before deadline, taking fds that come with them.
 * Returns the bytes read (fewer at EOF), or -errno.
 */
/* try: with nothing read yet and nothing there, return -EAGAIN instead of waiting. */
static ssize_t read_until(int sock, struct sc_vu_msg *m, void *buf, size_t len, int64_t deadline, int stop_fd,
			  bool try, bool *too_many_fds)
{
	size_t got = 0;
	while (got < len) {
		char control[CMSG_SPACE(SC_VU_MAX_FDS * sizeof(int))];
		struct iovec iov = { (char *)buf + got, len - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
				     .msg_controllen = sizeof(control) };
		ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (try && got == 0)
				return -EAGAIN;
			int w = wait_sock(sock, POLLIN, deadline, stop_fd);
			if (w < 0)
				return w;
			continue;
		}
		if (n < 0)
			return -errno;
		if (!take_fds(m, &mh))
			*too_many_fds = true;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Refuse a message whose header or payload (part, "a 12-byte header") stopped short after got bytes or -errno. */
static int refuse_short(struct sc_vu_msg *m, ssize_t got, const char *part, int timeout_ms, char *err, size_t errlen)
{
	if (got == -ETIMEDOUT)
		return refuse(m, -ETIMEDOUT, err, errlen, "only part of %s came within %d ms", part, timeout_ms);
	if (got == -ECANCELED)
		return refuse(m, -ECANCELED, err, errlen, "stopped while %s was arriving", part);
	if (got < 0)
		return refuse(m, (int)got, err, errlen, "recvmsg: %s", strerror((int)-got));
	return refuse(m, -EPROTO, err, errlen, "connection ended after %zd bytes of %s", got, part);
}

static int recv_msg(int sock, unsigned nvrings, struct sc_vu_msg *m, int timeout_ms, int stop_fd, bool try,
		    char *err, size_t errlen)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	bool too_many = false;
	char part[48];
	ssize_t n;

	memset(m, 0, sizeof(*m));
	n = read_until(sock, m, &m->hdr, sizeof(m->hdr), deadline, stop_fd, try, &too_many);
	if (n == -EAGAIN)
		return -EAGAIN;   /* try: no message there */
	if (too_many)
		return refuse(m, -EBADF, err, errlen, "more than %u file descriptors", SC_VU_MAX_FDS);
	if (n == 0 && m->nfds == 0)
		return 0;   /* the front end closed the connection */
	if (n != (ssize_t)sizeof(m->hdr))
		return refuse_short(m, n, "a message header", timeout_ms, err, errlen);
	if ((m->hdr.flags & SC_VHOST_USER_VERSION_MASK) != SC_VHOST_USER_VERSION)
		return refuse(m, -EPROTO, err, errlen, "protocol version %u, expected 1",
			      m->hdr.flags & SC_VHOST_USER_VERSION_MASK);
	if (m->hdr.size > sizeof(m->payload))
		return refuse(m, -EPROTO, err, errlen, "payload of %u bytes, larger than any message (%zu)",
			      m->hdr.size, sizeof(m->payload));
	n = read_until(sock, m, &m->payload, m->hdr.size, deadline, stop_fd, false, &too_many);
	if (too_many)
		return refuse(m, -EBADF, err, errlen, "more than %u file descriptors", SC_VU_MAX_FDS);
	snprintf(part, sizeof(part), "a %u-byte payload", m->hdr.size);
	if (n != (ssize_t)m->hdr.size)
		return refuse_short(m, n, part, timeout_ms, err, errlen);
	int ret = sc_vu_msg_check(m, nvrings, err, errlen);
	return ret < 0 ? ret : 1;
}

int sc_vu_msg_recv_timed(int sock, unsigned nvrings, struct sc_vu_msg *m, int timeout_ms, int stop_fd,
			 char *err, size_t errlen)
{
	return recv_msg(sock, nvrings, m, timeout_ms, stop_fd, false, err, errlen);
}

int sc_vu_msg_recv_next(int sock, unsigned nvrings, struct sc_vu_msg *m, int timeout_ms, int stop_fd,
			char *err, size_t errlen)
{
	return recv_msg(sock, nvrings, m, timeout_ms, stop_fd, true, err, errlen);
}

int sc_vu_msg_recv_iotlb(int sock, struct sc_vu_iotlb_wire *out, unsigned max)
{
	struct sc_vu_iotlb_wire buf[SC_VU_IOTLB_BURST];
	char control[CMSG_SPACE(SC_VU_MAX_FDS * sizeof(int))];
	struct iovec iov = { buf, (max < SC_VU_IOTLB_BURST ? max : SC_VU_IOTLB_BURST) * sizeof(buf[0]) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control) };
	ssize_t n;

	do
		n = recvmsg(sock, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (mh.msg_controllen) {
		/* A peek hands out copies of the fds: close them; the message they came with is for recv_next. */
		struct sc_vu_msg m = { .nfds = 0 };
		take_fds(&m, &mh);
		sc_vu_msg_close_fds(&m);
		return 0;
	}
	unsigned k = 0;
	while ((size_t)n >= (k + 1) * sizeof(buf[0]) && buf[k].hdr.request == SC_VHOST_USER_IOTLB_MSG &&
	       (buf[k].hdr.flags & SC_VHOST_USER_VERSION_MASK) == SC_VHOST_USER_VERSION &&
	       buf[k].hdr.size == sizeof(buf[k].t))
		k++;
	if (k == 0)
		return 0;
	/* Exactly the peeked messages' bytes: no fds came with them, so none can come now. */
	size_t len = k * sizeof(buf[0]);
	do
		n = recv(sock, out, len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		return n < 0 ? -errno : -EPROTO;   /* a peer cannot take back what it wrote: only a broken socket */
	return (int)k;
}

int sc_vu_msg_recv(int sock, unsigned nvrings, struct sc_vu_msg *m, char *err, size_t errlen)
{
	return sc_vu_msg_recv_timed(sock, nvrings, m, -1, -1, err, errlen);
}

int sc_vu_send_timed(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size, int fd,
		     int timeout_ms, int stop_fd)
{
	struct sc_vu_hdr h = { .request = request, .flags = SC_VHOST_USER_VERSION | flags, .size = size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
	char control[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;

	if (fd >= 0) {
		/* The fd travels with the header's bytes, as the receiver expects. */
		mh.msg_control = control;
		mh.msg_controllen = sizeof(control);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (mh.msg_iovlen) {
		/* Never block and never SIGPIPE: a peer that does not read costs us at most the timeout. */
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int w = wait_sock(sock, POLLOUT, deadline, stop_fd);
			if (w < 0)
				return w;
			continue;
		}
		if (n < 0)
			return -errno;
		mh.msg_control = NULL;   /* the fd went with the first byte */
		mh.msg_controllen = 0;
		while (mh.msg_iovlen && (size_t)n >= mh.msg_iov->iov_len) {
			n -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + n;
			mh.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int sc_vu_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size, int fd)
{
	return sc_vu_send_timed(sock, request, flags, payload, size, fd, -1, -1);
}

int sc_vu_reply(int sock, const struct sc_vu_msg *req, const void *payload, uint32_t size)
{
	return sc_vu_send(sock, req->hdr.request, SC_VHOST_USER_REPLY, payload, size, -1);
}
