/* SPDX-License-Identifier: MIT */
/*
 * vu_net: a virtio-net device (devices/net.h on a DPDK port) behind a
 * vhost-user socket. Vring 2k and 2k+1 (pair k) are served by sidecore
 * pollers[k % npollers]; the control queue by pollers[0].
 *
 * QEMU and DPDK's virtio-user handle the control queue themselves and only
 * tell the back end which pairs to enable; a front end that passes it
 * through gets it served here.
 */
#ifndef SC_RUNTIME_VU_NET_H
#define SC_RUNTIME_VU_NET_H

#include "devices/net.h"
#include "polling/polling.h"
#include "runtime/vu_queues.h"
#include "runtime/vu_server.h"

struct sc_vu_net {
	struct sc_net_dev dev;
	unsigned num_queues;                /* vrings: 2 * pairs + 1 */
	struct sc_vu_device_ops ops;        /* pass to sc_vu_server_create with this as ctx */
	struct sc_vu_queues qs;             /* which vrings are live, and on which sidecore */
	struct sc_net_queue queues[SC_VU_MAX_VRINGS];
	char names[SC_VU_MAX_VRINGS][16];
};

/*
 * Set up d (nothing served yet) for pairs rx/tx pairs (1..SC_NET_MAX_PAIRS)
 * on port, with mac (6 bytes) and mtu, its pairs spread over the pollers.
 */
void sc_vu_net_init(struct sc_vu_net *d, struct sc_net_port *port, unsigned pairs, const uint8_t *mac, uint16_t mtu,
		    struct sc_poller **pollers, unsigned npollers);

/* Free what sc_vu_net_init set up; the server must be destroyed first. */
void sc_vu_net_fini(struct sc_vu_net *d);

/*
 * Is vring idx being served now? Any thread (the stats socket).
 * d->queues[idx].stats may be read with relaxed atomic loads at any time:
 * they count from the ring's last start and stay after it stops.
 */
bool sc_vu_net_queue_running(const struct sc_vu_net *d, unsigned idx);

/* The sidecore that serves vring idx. Any thread. */
struct sc_poller *sc_vu_net_queue_poller(const struct sc_vu_net *d, unsigned idx);

#endif
