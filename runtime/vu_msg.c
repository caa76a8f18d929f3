/* SPDX-License-Identifier: MIT */
/*
 * Reading and checking vhost-user messages. Each request type declares its
 * payload size, how many fds it carries and whether it names a vring, in
 * one table; the value checks that depend on the payload follow it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/vhost_user.h"

enum size_rule { SZ_EXACT, SZ_MEM_TABLE, SZ_CONFIG };
enum vring_rule { NO_VRING, VRING_STATE, VRING_ADDR, VRING_FILE };

struct rule {
	const char *name;
	enum size_rule size_rule;
	uint32_t size;            /* SZ_EXACT: the payload size */
	uint8_t fds_min, fds_max;
	enum vring_rule vring;
};

#define RULE(req, sr, sz, fmin, fmax, vr) [VHOST_USER_##req] = { #req, sr, sz, fmin, fmax, vr }
static const struct rule rules[VHOST_USER_REQUEST_MAX] = {
	RULE(GET_FEATURES, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(SET_FEATURES, SZ_EXACT, 8, 0, 0, NO_VRING),
	RULE(SET_OWNER, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(RESET_OWNER, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(SET_MEM_TABLE, SZ_MEM_TABLE, 0, 0, SC_VU_MAX_MEM_REGIONS, NO_VRING),
	RULE(SET_VRING_NUM, SZ_EXACT, 8, 0, 0, VRING_STATE),
	RULE(SET_VRING_ADDR, SZ_EXACT, sizeof(struct sc_vu_vring_addr), 0, 0, VRING_ADDR),
	RULE(SET_VRING_BASE, SZ_EXACT, 8, 0, 0, VRING_STATE),
	RULE(GET_VRING_BASE, SZ_EXACT, 8, 0, 0, VRING_STATE),
	RULE(SET_VRING_KICK, SZ_EXACT, 8, 0, 1, VRING_FILE),
	RULE(SET_VRING_CALL, SZ_EXACT, 8, 0, 1, VRING_FILE),
	RULE(SET_VRING_ERR, SZ_EXACT, 8, 0, 1, VRING_FILE),
	RULE(GET_PROTOCOL_FEATURES, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(SET_PROTOCOL_FEATURES, SZ_EXACT, 8, 0, 0, NO_VRING),
	RULE(GET_QUEUE_NUM, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(SET_VRING_ENABLE, SZ_EXACT, 8, 0, 0, VRING_STATE),
	RULE(GET_CONFIG, SZ_CONFIG, 0, 0, 0, NO_VRING),
	RULE(SET_CONFIG, SZ_CONFIG, 0, 0, 0, NO_VRING),
	/* QEMU sends the 20-byte inflight description padded to 24. */
	RULE(GET_INFLIGHT_FD, SZ_EXACT, 24, 0, 0, NO_VRING),
	RULE(SET_INFLIGHT_FD, SZ_EXACT, 24, 1, 1, NO_VRING),
	RULE(RESET_DEVICE, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(GET_MAX_MEM_SLOTS, SZ_EXACT, 0, 0, 0, NO_VRING),
	RULE(ADD_MEM_REG, SZ_EXACT, 8 + sizeof(struct sc_vu_region), 1, 1, NO_VRING),
	RULE(REM_MEM_REG, SZ_EXACT, 8 + sizeof(struct sc_vu_region), 0, 1, NO_VRING),
	RULE(SET_STATUS, SZ_EXACT, 8, 0, 0, NO_VRING),
	RULE(GET_STATUS, SZ_EXACT, 0, 0, 0, NO_VRING),
};
#undef RULE

/* Requests the protocol defines that this back end does not take (they get -ENOTSUP). */
static const char *const unsupported_names[VHOST_USER_REQUEST_MAX] = {
	[6] = "SET_LOG_BASE", [7] = "SET_LOG_FD", [19] = "SEND_RARP", [20] = "NET_SET_MTU",
	[21] = "SET_BACKEND_REQ_FD", [22] = "IOTLB_MSG", [23] = "SET_VRING_ENDIAN",
	[26] = "CREATE_CRYPTO_SESSION", [27] = "CLOSE_CRYPTO_SESSION", [28] = "POSTCOPY_ADVISE",
	[29] = "POSTCOPY_LISTEN", [30] = "POSTCOPY_END", [33] = "GPU_SET_SOCKET", [35] = "VRING_KICK",
};

const char *sc_vu_request_name(uint32_t request)
{
	if (request < VHOST_USER_REQUEST_MAX && rules[request].name)
		return rules[request].name;
	if (request < VHOST_USER_REQUEST_MAX && unsupported_names[request])
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

	if (req >= VHOST_USER_REQUEST_MAX || !rules[req].name)
		return refuse(m, -ENOTSUP, err, errlen, "not supported by this back end");
	r = &rules[req];

	/* Size first: everything below reads the payload. */
	switch (r->size_rule) {
	case SZ_EXACT:
		if (size != r->size)
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes, expected %u", size, r->size);
		break;
	case SZ_MEM_TABLE:
		if (size < 8)
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes, shorter than its region count", size);
		if (m->payload.memory.nregions > SC_VU_MAX_MEM_REGIONS)
			return refuse(m, -EINVAL, err, errlen, "%u memory regions, at most %u", m->payload.memory.nregions,
				      SC_VU_MAX_MEM_REGIONS);
		if (size != 8 + m->payload.memory.nregions * sizeof(struct sc_vu_region))
			return refuse(m, -EBADMSG, err, errlen, "payload of %u bytes does not hold %u regions", size,
				      m->payload.memory.nregions);
		break;
	case SZ_CONFIG:
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
	if (r->vring == VRING_FILE)
		want_min = want_max = (m->payload.u64 & VHOST_USER_VRING_NOFD) ? 0 : 1;
	else if (r->size_rule == SZ_MEM_TABLE)
		want_min = want_max = m->payload.memory.nregions;
	if (m->nfds < want_min || m->nfds > want_max) {
		if (want_min == want_max)
			return refuse(m, -EBADF, err, errlen, "carries %u file descriptors, expected %u", m->nfds, want_min);
		return refuse(m, -EBADF, err, errlen, "carries %u file descriptors, expected %u to %u", m->nfds,
			      want_min, want_max);
	}

	/* The vring index, in the one place every vring message passes. */
	switch (r->vring) {
	case VRING_STATE: index = m->payload.state.index; break;
	case VRING_ADDR: index = m->payload.addr.index; break;
	case VRING_FILE:
		if (m->payload.u64 & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD))
			return refuse(m, -EINVAL, err, errlen, "unknown bits in 0x%llx", (unsigned long long)m->payload.u64);
		index = (uint32_t)(m->payload.u64 & VHOST_USER_VRING_IDX_MASK);
		break;
	case NO_VRING: break;
	}
	if (r->vring != NO_VRING && index >= nvrings)
		return refuse(m, -ERANGE, err, errlen, "vring %u, the device has %u", index, nvrings);

	/* Values. */
	switch (req) {
	case VHOST_USER_SET_VRING_NUM: {
		uint32_t num = m->payload.state.num;
		if (num == 0 || (num & (num - 1)) || num > SC_VU_MAX_QUEUE_SIZE)
			return refuse(m, -EINVAL, err, errlen, "queue size %u is not a power of two in 1..%u", num,
				      SC_VU_MAX_QUEUE_SIZE);
		break;
	}
	case VHOST_USER_SET_VRING_BASE:
		if (m->payload.state.num > UINT16_MAX)
			return refuse(m, -EINVAL, err, errlen, "ring base %u does not fit 16 bits", m->payload.state.num);
		break;
	case VHOST_USER_SET_VRING_ENABLE:
		if (m->payload.state.num > 1)
			return refuse(m, -EINVAL, err, errlen, "enable flag %u is not 0 or 1", m->payload.state.num);
		break;
	case VHOST_USER_SET_MEM_TABLE:
		for (uint32_t i = 0; i < m->payload.memory.nregions; i++) {
			const struct sc_vu_region *a = &m->payload.memory.regions[i];
			if (!region_ok(a))
				return refuse(m, -EINVAL, err, errlen, "region %u is empty or wraps the address space", i);
			for (uint32_t j = 0; j < i; j++)
				if (regions_overlap(a, &m->payload.memory.regions[j]))
					return refuse(m, -EINVAL, err, errlen, "regions %u and %u overlap in guest memory", j, i);
		}
		break;
	case VHOST_USER_ADD_MEM_REG:
	case VHOST_USER_REM_MEM_REG:
		if (!region_ok(&m->payload.mem_reg.region))
			return refuse(m, -EINVAL, err, errlen, "region is empty or wraps the address space");
		break;
	case VHOST_USER_SET_INFLIGHT_FD:
	case VHOST_USER_GET_INFLIGHT_FD: {
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

/* Read exactly len bytes (no fds expected); 0 at a clean EOF before any byte. */
static ssize_t read_full(int sock, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(sock, (char *)buf + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return (ssize_t)got;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int sc_vu_msg_recv(int sock, unsigned nvrings, struct sc_vu_msg *m, char *err, size_t errlen)
{
	char control[CMSG_SPACE(SC_VU_MAX_FDS * sizeof(int))];
	struct iovec iov = { &m->hdr, sizeof(m->hdr) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			     .msg_controllen = sizeof(control) };
	ssize_t n;

	memset(m, 0, sizeof(*m));
	/* The fds travel with the header's bytes: one recvmsg for the header. */
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		snprintf(err, errlen, "vhost-user: recvmsg: %s", strerror(errno));
		return -errno;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (unsigned i = 0; i < k && m->nfds < SC_VU_MAX_FDS; i++)
			memcpy(&m->fds[m->nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (mh.msg_flags & MSG_CTRUNC)
		return refuse(m, -EBADF, err, errlen, "more than %u file descriptors", SC_VU_MAX_FDS);
	if (n == 0 && m->nfds == 0)
		return 0;   /* the front end closed the connection */
	if ((size_t)n < sizeof(m->hdr)) {
		ssize_t more = read_full(sock, (char *)&m->hdr + n, sizeof(m->hdr) - (size_t)n);
		if (more < 0 || (size_t)n + (size_t)more < sizeof(m->hdr))
			return refuse(m, -EPROTO, err, errlen, "connection ended inside a message header");
	}
	if ((m->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION)
		return refuse(m, -EPROTO, err, errlen, "protocol version %u, expected 1",
			      m->hdr.flags & VHOST_USER_VERSION_MASK);
	if (m->hdr.size > sizeof(m->payload))
		return refuse(m, -EPROTO, err, errlen, "payload of %u bytes, larger than any message (%zu)",
			      m->hdr.size, sizeof(m->payload));
	n = read_full(sock, &m->payload, m->hdr.size);
	if (n < 0 || (uint32_t)n < m->hdr.size)
		return refuse(m, -EPROTO, err, errlen, "connection ended after %zd of %u payload bytes",
			      n < 0 ? (ssize_t)0 : n, m->hdr.size);
	int ret = sc_vu_msg_check(m, nvrings, err, errlen);
	return ret < 0 ? ret : 1;
}

int sc_vu_send(int sock, uint32_t request, uint32_t flags, const void *payload, uint32_t size, int fd)
{
	struct sc_vu_hdr h = { .request = request, .flags = VHOST_USER_VERSION | flags, .size = size };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)payload, size } };
	char control[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = size ? 2 : 1 };
	ssize_t n;

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
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == sizeof(h) + size ? 0 : -EIO;
}

int sc_vu_reply(int sock, const struct sc_vu_msg *req, const void *payload, uint32_t size)
{
	return sc_vu_send(sock, req->hdr.request, VHOST_USER_REPLY, payload, size, -1);
}
