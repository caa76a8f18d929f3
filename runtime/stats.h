/* SPDX-License-Identifier: MIT */
/*
 * stats: sidecored's stats and control socket. A unix stream socket; a
 * client connects, sends one command line, and reads one JSON document
 * (then the server closes). Commands: "stats"; "move DEVICE QUEUE CPU"
 * (serve that vring from the sidecore on CPU: sc_vu_blk_queue_move),
 * answered {"moved": {"device", "queue", "from", "to"}}. A bad command or
 * name gets {"error": "what; what to do"}. Whoever may connect may move
 * queues: the socket's directory decides who that is.
 *
 * The document (jansson):
 *   { "version", "pid", "interval_s" (the sample the shares cover),
 *     "sidecores": [ { "cpu", "busy", "idle", "sleep", "cpu_use" (shares of
 *        the last interval, 0..1), "rounds", "work" (what its queues'
 *        polls reported: requests started, pieces moved, completions), "sleeps",
 *        "wakeups", "rearm_races", "faults", "queues", "stopped_queues" } ],
 *     "devices": [ { "name", "socket", "rings_started",
 *        "queues": [ { "queue", "sidecore" (cpu), "running", every
 *           sc_vq_stat_names counter, every block counter (reads, writes,
 *           bytes_read, ...) or, for a NIC, every sc_net_stats counter, "depth", "broken_reason" (null unless
 *           broken) } ] } ] }
 * busy: rounds that served a request; idle: rounds that found none
 * (spinning); sleep: the rest (asleep on the kick eventfds). cpu_use is the
 * sidecore thread's own cpu time over the interval.
 *
 * The server samples every interval on its own thread, which also answers
 * the clients one at a time: a client that sends nothing for 200 ms, or
 * does not read, is dropped and costs the others at most that.
 */
#ifndef SC_RUNTIME_STATS_H
#define SC_RUNTIME_STATS_H

#include <jansson.h>
#include <stddef.h>

#include "polling/polling.h"
#include "runtime/vu_blk.h"
#include "runtime/vu_net.h"

#define SC_STATS_INTERVAL_MS 1000

struct sc_stats_device {
	const char *name;             /* NAME of [blk.NAME] */
	const char *socket;
	struct sc_vu_blk *dev;         /* a disk, or NULL for a NIC: */
	const struct sc_vu_net *net;   /* its queues report the sc_net_stats counters (rx_packets, tx_packets, ...) */
	const struct sc_vu_server *srv;   /* NULL: rings_started is 0 */
};

/* What the server reports on; every pointer must outlive the server. */
struct sc_stats_source {
	struct sc_poller *const *pollers;
	int npollers;
	const struct sc_stats_device *devices;
	int ndevices;
	unsigned interval_ms;         /* 0: SC_STATS_INTERVAL_MS */
};

struct sc_stats_server;

/*
 * Listen at path (replacing a stale socket; refusing anything else) and
 * answer on a thread of its own. Returns 0, or a negative errno with one
 * line in err naming the path and what to do.
 */
int sc_stats_server_create(const char *path, const struct sc_stats_source *src, struct sc_stats_server **out,
			   char *err, size_t errlen);

/*
 * Report on devices[0..n) from now on instead (sidecored's reload): copies
 * the array; the devices it names must outlive the next call or the
 * server. Returns once no client is being answered from the old list, so
 * a device left out may be destroyed then. 0 or -ENOMEM (the old list
 * stays). Any thread but the server's.
 */
int sc_stats_server_set_devices(struct sc_stats_server *s, const struct sc_stats_device *devices, int n);

/* Stop the thread, close and remove the socket. NULL is a no-op. */
void sc_stats_server_destroy(struct sc_stats_server *s);

#endif
