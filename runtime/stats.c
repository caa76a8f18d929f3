/* SPDX-License-Identifier: MIT */
#include "runtime/stats.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/tsc.h"

#define CLIENT_TIMEOUT_MS 200   /* to send its command; a slow client delays the others this much at most */
#define REPLY_TIMEOUT_MS 1000   /* to read the reply */

/* One sidecore at one instant. */
struct sample {
	uint64_t tsc, wall_ns, cpu_ns;
	struct sc_poller_stats st;
};

struct sc_stats_server {
	struct sc_stats_source src;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int lfd, stopfd;
	pthread_t thread;
	bool started;
	struct sample *prev, *cur;   /* the last two samples, npollers each */
	struct sample *now;          /* scratch, for a request before the first interval passed */
	bool have_cur;               /* cur was taken (else only prev, from start-up) */
	unsigned interval_ms;
	/* Held while a reply is built from src.devices, and to replace them (sc_stats_server_set_devices). */
	pthread_mutex_t lock;
	struct sc_stats_device *devs;   /* our copy of the device list */
};

/* Block counters of a queue by name: adding one is one line. */
static const struct {
	const char *name;
	size_t offset;
} blk_counters[] = {
#define BLK(f) { #f, offsetof(struct sc_blk_queue, stats.f) }
	BLK(reads), BLK(writes), BLK(flushes), BLK(get_ids), BLK(bytes_read), BLK(bytes_written),
	BLK(unsupported), BLK(bad_requests),
#undef BLK
	{ "io_errors", offsetof(struct sc_blk_queue, io_errors) },
	{ "sync_done", offsetof(struct sc_blk_queue, sync_done) },
	{ "split", offsetof(struct sc_blk_queue, split) },
};

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void take(const struct sc_stats_server *s, struct sample *out)
{
	for (int i = 0; i < s->src.npollers; i++) {
		struct sc_poller *p = s->src.pollers[i];
		out[i].wall_ns = mono_ns();
		out[i].tsc = sc_rdtsc();
		out[i].cpu_ns = sc_poller_cpu_time_ns(p);
		sc_poller_get_stats(p, &out[i].st);
	}
}

static double share(uint64_t part, uint64_t whole)
{
	double x = whole ? (double)part / (double)whole : 0;
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

static json_t *sidecore_json(struct sc_poller *p, const struct sample *a, const struct sample *b)
{
	/*
	 * Busy and idle cycles are added at the end of each round, sleep only on
	 * waking: so busy and idle are shares of the wall clock (in TSC cycles)
	 * and sleep is what is left, which counts a sidecore asleep all along.
	 */
	uint64_t wall = b->tsc - a->tsc;
	double busy = share(b->st.busy_cycles - a->st.busy_cycles, wall);
	double idle = share(b->st.idle_cycles - a->st.idle_cycles, wall);
	if (busy + idle > 1)
		idle = 1 - busy;
	return json_pack("{s:i, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i}", "cpu", sc_poller_cpu(p),
			 "busy", busy, "idle", idle, "sleep", 1 - busy - idle, "cpu_use",
			 share(b->cpu_ns - a->cpu_ns, b->wall_ns - a->wall_ns), "rounds", (json_int_t)b->st.rounds,
			 "work", (json_int_t)b->st.requests, "sleeps", (json_int_t)b->st.sleeps, "wakeups",
			 (json_int_t)b->st.wakeups, "rearm_races", (json_int_t)b->st.rearm_races, "faults",
			 (json_int_t)b->st.faults, "isolation_faults", (json_int_t)b->st.isolation_faults, "queues",
			 (int)b->st.queues, "stopped_queues", (int)b->st.stopped_queues);
}

/* Net counters of a queue by name. */
static const struct {
	const char *name;
	size_t offset;
} net_counters[] = {
#define NET(f) { #f, offsetof(struct sc_net_queue, stats.f) }
	NET(rx_packets), NET(rx_bytes), NET(rx_no_buffers), NET(rx_too_big), NET(rx_bad_chains), NET(tx_packets),
	NET(tx_bytes), NET(tx_bad), NET(tx_dropped), NET(tx_gso_packets), NET(tx_gso_segments), NET(ctrl_ok), NET(ctrl_err),
#undef NET
};

static json_int_t load64(const void *base, size_t offset)
{
	return (json_int_t)__atomic_load_n((const uint64_t *)((const char *)base + offset), __ATOMIC_RELAXED);
}

static json_t *queue_json(const struct sc_vu_blk *d, unsigned idx)
{
	const struct sc_blk_queue *q = &d->queues[idx];
	struct sc_poller *p = sc_vu_blk_queue_poller(d, idx);
	bool running = sc_vu_blk_queue_running(d, idx);
	json_t *o = json_pack("{s:i, s:i, s:b}", "queue", (int)idx, "sidecore", p ? sc_poller_cpu(p) : -1, "running",
			      running);

	for (unsigned i = 0; i < sc_vq_stat_count; i++)
		json_object_set_new(o, sc_vq_stat_names[i].name,
				    json_integer(running ? (json_int_t)sc_vq_stat(&q->vq, sc_vq_stat_names[i].offset) : 0));
	for (size_t i = 0; i < sizeof(blk_counters) / sizeof(blk_counters[0]); i++)
		json_object_set_new(o, blk_counters[i].name, json_integer(running ? load64(q, blk_counters[i].offset) : 0));
	/* Requests the queue holds: in io_uring, with I/O still to do, or held for delay_us. */
	unsigned depth = running ? __atomic_load_n(&q->inflight, __ATOMIC_RELAXED) +
					   __atomic_load_n(&q->nactive, __ATOMIC_RELAXED) +
					   __atomic_load_n(&q->nheld, __ATOMIC_RELAXED) : 0;
	json_object_set_new(o, "depth", json_integer(depth));
	/* The acquire in sc_vq_broken orders the reason's read after the flag. */
	json_object_set_new(o, "broken_reason", running && sc_vq_broken(&q->vq) ? json_string(q->vq.broken_reason)
										: json_null());
	return o;
}

static json_t *net_queue_json(const struct sc_vu_net *d, unsigned idx)
{
	const struct sc_net_queue *q = &d->queues[idx];
	struct sc_poller *p = sc_vu_net_queue_poller(d, idx);
	bool running = sc_vu_net_queue_running(d, idx);
	json_t *o = json_pack("{s:i, s:i, s:b}", "queue", (int)idx, "sidecore", p ? sc_poller_cpu(p) : -1, "running",
			      running);

	/* A stopped ring keeps its last counts until it starts again: what a front end that left had moved. */
	for (unsigned i = 0; i < sc_vq_stat_count; i++)
		json_object_set_new(o, sc_vq_stat_names[i].name,
				    json_integer((json_int_t)sc_vq_stat(&q->vq, sc_vq_stat_names[i].offset)));
	for (size_t i = 0; i < sizeof(net_counters) / sizeof(net_counters[0]); i++)
		json_object_set_new(o, net_counters[i].name, json_integer(load64(q, net_counters[i].offset)));
	json_object_set_new(o, "broken_reason", running && sc_vq_broken(&q->vq) ? json_string(q->vq.broken_reason)
										: json_null());
	return o;
}

static json_t *stats_json(struct sc_stats_server *s)
{
	const struct sample *a = s->prev, *b = s->cur;

	/* Before the first interval has passed: from start-up to now. */
	if (!s->have_cur) {
		take(s, s->now);
		b = s->now;
	}
	json_t *cores = json_array(), *devs = json_array();
	for (int i = 0; i < s->src.npollers; i++)
		json_array_append_new(cores, sidecore_json(s->src.pollers[i], &a[i], &b[i]));
	for (int i = 0; i < s->src.ndevices; i++) {
		const struct sc_stats_device *d = &s->src.devices[i];
		json_t *queues = json_array();
		for (unsigned q = 0; d->dev && q < d->dev->num_queues; q++)
			json_array_append_new(queues, queue_json(d->dev, q));
		for (unsigned q = 0; d->net && q < d->net->num_queues; q++)
			json_array_append_new(queues, net_queue_json(d->net, q));
		struct sc_vu_iotlb_stats io = { 0 };
		if (d->srv)
			sc_vu_server_iotlb_stats(d->srv, &io);
		json_t *iotlb = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "updates", (json_int_t)io.updates,
					  "invalidates", (json_int_t)io.invalidates, "refused", (json_int_t)io.refused,
					  "misses", (json_int_t)io.misses, "flushes", (json_int_t)io.flushes, "acks",
					  (json_int_t)io.acks, "ack_ns", (json_int_t)io.ack_ns, "entries",
					  (json_int_t)io.entries);
		json_array_append_new(devs, json_pack("{s:s, s:s, s:i, s:o, s:o}", "name", d->name, "socket", d->socket,
						      "rings_started", d->srv ? (int)sc_vu_server_started(d->srv) : 0,
						      "iotlb", iotlb, "queues", queues));
	}
	double interval = s->src.npollers ? (double)(b[0].wall_ns - a[0].wall_ns) / 1e9 : 0;
	return json_pack("{s:s, s:i, s:f, s:o, s:o}", "version", SC_VERSION, "pid", (int)getpid(), "interval_s",
			 interval, "sidecores", cores, "devices", devs);
}

static json_t *error_json(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *error_json(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:s}", "error", msg);
}

/* "DEVICE QUEUE CPU": move that vring to the sidecore on CPU. */
static json_t *move_json(struct sc_stats_server *s, const char *args)
{
	char name[64], list[512];
	unsigned queue;
	int cpu, n = 0;
	size_t used = 0;

	if (sscanf(args, "%63s %u %d %n", name, &queue, &cpu, &n) != 3 || args[n])
		return error_json("move takes DEVICE QUEUE CPU, got '%s'", args);
	const struct sc_stats_device *d = NULL;
	list[0] = '\0';
	for (int i = 0; i < s->src.ndevices; i++) {
		if (!strcmp(s->src.devices[i].name, name))
			d = &s->src.devices[i];
		used += (size_t)snprintf(list + used, used < sizeof(list) ? sizeof(list) - used : 0, "%s%s", i ? ", " : "",
					 s->src.devices[i].name);
	}
	if (!d)
		return error_json("no device '%s' (devices: %s)", name, s->src.ndevices ? list : "none");
	if (!d->dev)
		return error_json("%s is a NIC; its queues stay with their pairs' sidecores", name);
	if (queue >= d->dev->num_queues)
		return error_json("%s has no queue %u (queues 0..%u)", name, queue, d->dev->num_queues - 1);
	struct sc_poller *to = NULL;
	list[0] = '\0';
	used = 0;
	for (int i = 0; i < s->src.npollers; i++) {
		if (sc_poller_cpu(s->src.pollers[i]) == cpu)
			to = s->src.pollers[i];
		used += (size_t)snprintf(list + used, used < sizeof(list) ? sizeof(list) - used : 0, "%s%d", i ? "," : "",
					 sc_poller_cpu(s->src.pollers[i]));
	}
	if (!to)
		return error_json("cpu %d is not a sidecore (sidecores: %s)", cpu, list);
	int from = sc_poller_cpu(sc_vu_blk_queue_poller(d->dev, queue));
	int r = sc_vu_blk_queue_move(d->dev, queue, to);
	if (r < 0)
		return error_json("%s queue %u stays on cpu %d: %s", name, queue, from, strerror(-r));
	return json_pack("{s:{s:s, s:i, s:i, s:i}}", "moved", "device", name, "queue", (int)queue, "from", from, "to",
			 cpu);
}

/* Wait up to ms for fd to be ready for events; false on timeout, error or stop. */
static bool wait_fd(struct sc_stats_server *s, int fd, short events, int ms)
{
	struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = s->stopfd, .events = POLLIN } };
	return poll(p, 2, ms) > 0 && !p[1].revents && (p[0].revents & (events | POLLHUP | POLLERR));
}

static void serve(struct sc_stats_server *s, int c)
{
	char cmd[64];
	size_t n = 0;

	/* One line; a client that says nothing within the timeout is dropped. */
	while (n < sizeof(cmd) - 1 && !memchr(cmd, '\n', n)) {
		if (!wait_fd(s, c, POLLIN, CLIENT_TIMEOUT_MS))
			return;
		ssize_t r = recv(c, cmd + n, sizeof(cmd) - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	cmd[n] = '\0';
	cmd[strcspn(cmd, "\r\n")] = '\0';

	json_t *doc;
	pthread_mutex_lock(&s->lock);
	if (!strcmp(cmd, "stats"))
		doc = stats_json(s);
	else if (!strncmp(cmd, "move ", 5))
		doc = move_json(s, cmd + 5);
	else
		doc = json_pack("{s:s+}", "error", "unknown command; commands: stats, move DEVICE QUEUE CPU; got: ",
				cmd[0] ? cmd : "(nothing)");
	pthread_mutex_unlock(&s->lock);
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	if (!text)
		return;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = send(c, text + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0)
			off += (size_t)w;
		else if (w < 0 && errno == EAGAIN && wait_fd(s, c, POLLOUT, REPLY_TIMEOUT_MS))
			continue;
		else
			break;
	}
	if (off == len)
		send(c, "\n", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(text);
}

static void *stats_thread(void *arg)
{
	struct sc_stats_server *s = arg;
	uint64_t next = mono_ns() + s->interval_ms * 1000000ull;

	for (;;) {
		uint64_t now = mono_ns();
		int timeout = now >= next ? 0 : (int)((next - now) / 1000000u) + 1;
		struct pollfd p[2] = { { .fd = s->lfd, .events = POLLIN }, { .fd = s->stopfd, .events = POLLIN } };
		int r = poll(p, 2, timeout);
		if (p[1].revents)
			break;
		if (r < 0 && errno != EINTR)
			break;
		now = mono_ns();
		if (now >= next) {
			struct sample *t = s->prev;
			if (s->have_cur) {
				s->prev = s->cur;
				s->cur = t;
			}
			take(s, s->cur);
			s->have_cur = true;
			next = now - next > s->interval_ms * 1000000ull ? now + s->interval_ms * 1000000ull
									 : next + s->interval_ms * 1000000ull;
		}
		if (p[0].revents & POLLIN) {
			int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (c >= 0) {
				serve(s, c);
				close(c);
			}
		}
	}
	return NULL;
}

/* A socket file someone still answers on is not stale. */
static bool socket_alive(const struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive = fd >= 0 && connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0;
	if (fd >= 0)
		close(fd);
	return alive;
}

int sc_stats_server_create(const char *path, const struct sc_stats_source *src, struct sc_stats_server **out,
			   char *err, size_t errlen)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct sc_stats_server *s;
	struct stat st;
	int ret;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "stats socket '%s': longer than a unix socket path (%zu); choose a shorter one", path,
			 sizeof(addr.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(addr.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "stats socket '%s' exists and is not a socket; remove it or set stats_socket",
				 path);
			return -EEXIST;
		}
		if (socket_alive(&addr)) {
			snprintf(err, errlen, "stats socket '%s' is answered by another process (a second sidecored?); stop "
				 "it or set stats_socket", path);
			return -EADDRINUSE;
		}
		unlink(path);
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->src = *src;
	pthread_mutex_init(&s->lock, NULL);
	if (sc_stats_server_set_devices(s, src->devices, src->ndevices) < 0) {
		free(s);
		return -ENOMEM;
	}
	s->interval_ms = src->interval_ms ? src->interval_ms : SC_STATS_INTERVAL_MS;
	s->lfd = s->stopfd = -1;
	snprintf(s->path, sizeof(s->path), "%s", path);
	s->prev = calloc((size_t)(src->npollers + 1), sizeof(*s->prev));
	s->cur = calloc((size_t)(src->npollers + 1), sizeof(*s->cur));
	s->now = calloc((size_t)(src->npollers + 1), sizeof(*s->now));
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	s->stopfd = eventfd(0, EFD_CLOEXEC);
	if (!s->prev || !s->cur || !s->now || s->lfd < 0 || s->stopfd < 0) {
		ret = -ENOMEM;
		snprintf(err, errlen, "stats socket '%s': out of memory or fds", path);
		goto fail;
	}
	if (bind(s->lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "stats socket '%s': %s; make its directory writable or set stats_socket", path,
			 strerror(errno));
		goto fail;
	}
	if (listen(s->lfd, 16) < 0) {
		ret = -errno;
		snprintf(err, errlen, "stats socket '%s': listen: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	take(s, s->prev);
	ret = -pthread_create(&s->thread, NULL, stats_thread, s);
	if (ret < 0) {
		snprintf(err, errlen, "stats socket '%s': cannot start its thread: %s", path, strerror(-ret));
		unlink(path);
		goto fail;
	}
	s->started = true;
	*out = s;
	return 0;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->stopfd >= 0)
		close(s->stopfd);
	free(s->prev);
	free(s->cur);
	free(s->now);
	free(s->devs);
	free(s);
	return ret;
}

int sc_stats_server_set_devices(struct sc_stats_server *s, const struct sc_stats_device *devices, int n)
{
	struct sc_stats_device *copy = calloc((size_t)n + 1, sizeof(*copy));

	if (!copy)
		return -ENOMEM;
	if (n)
		memcpy(copy, devices, (size_t)n * sizeof(*copy));
	pthread_mutex_lock(&s->lock);
	struct sc_stats_device *old = s->devs;
	s->devs = copy;
	s->src.devices = copy;
	s->src.ndevices = n;
	pthread_mutex_unlock(&s->lock);
	free(old);
	return 0;
}

void sc_stats_server_destroy(struct sc_stats_server *s)
{
	if (!s)
		return;
	uint64_t one = 1;
	if (write(s->stopfd, &one, sizeof(one)) != sizeof(one))
		perror("sidecore: stats socket: stop");
	if (s->started)
		pthread_join(s->thread, NULL);
	close(s->lfd);
	close(s->stopfd);
	unlink(s->path);
	free(s->prev);
	free(s->cur);
	free(s->now);
	free(s->devs);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
