/* SPDX-License-Identifier: MIT */
/*
 * vu_frontend: a user-space vhost-user front end (what DPDK's virtio-user
 * is), built on the driver library. It connects to any vhost-user-blk back
 * end (sidecored, qemu-storage-daemon), shares memfd "guest" memory with it,
 * and drives split rings from this process. Benchmarks use it so that every
 * back end is driven by the same client.
 */
#ifndef SC_RUNTIME_VU_FRONTEND_H
#define SC_RUNTIME_VU_FRONTEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "driver/driver.h"

#define SC_VU_FE_MAX_QUEUES 8

struct sc_vu_fe {
	int sock;
	int memfd;
	uint8_t *mem;                 /* guest memory; GPA 0 is mem[0] */
	uint64_t mem_size;
	unsigned nq;
	uint16_t qsize;
	uint64_t features;            /* negotiated */
	uint64_t capacity;            /* sectors, from the config space */
	struct sc_drv_vq vq[SC_VU_FE_MAX_QUEUES];
	int kick[SC_VU_FE_MAX_QUEUES];
	int call[SC_VU_FE_MAX_QUEUES];
	uint64_t buf_gpa;             /* free memory after the rings, for requests */
	bool iommu;                   /* ACCESS_PLATFORM: addresses are IOVAs this front end maps */
	int backend;                  /* our end of the back-end channel (IOMMU), or -1 */
};

/* sc_vu_fe_connect_flags: negotiate ACCESS_PLATFORM and play the vIOMMU (sc_vu_fe_iotlb). */
#define SC_VU_FE_IOMMU 1u

/*
 * Connect to the back end at path, negotiate, share mem_size bytes of
 * memory and start nq rings of qsize entries. Returns 0 or a negative
 * errno with one line in err.
 */
int sc_vu_fe_connect(struct sc_vu_fe *fe, const char *path, uint64_t mem_size, unsigned nq,
		     uint16_t qsize, char *err, size_t errlen);

/*
 * sc_vu_fe_connect with flags. With SC_VU_FE_IOMMU the back end must offer
 * ACCESS_PLATFORM, IOTLB, BACKEND_REQ and REPLY_ACK; ring addresses are
 * IOVAs equal to their guest addresses, mapped once at set-up, and every
 * request buffer must be mapped with sc_vu_fe_iotlb before the back end
 * sees it (MISS messages on the back-end channel are not answered).
 */
int sc_vu_fe_connect_flags(struct sc_vu_fe *fe, const char *path, uint64_t mem_size, unsigned nq,
			   uint16_t qsize, unsigned flags, char *err, size_t errlen);

/*
 * Send one IOTLB message (SC_VHOST_IOTLB_*): [iova, +size) to guest memory at
 * gpa with perm (SC_VHOST_ACCESS_*) for an UPDATE. With reply, wait for the
 * ack: returns 0, the back end's errno as a negative value, or -EPROTO.
 */
int sc_vu_fe_iotlb(struct sc_vu_fe *fe, uint8_t type, uint64_t iova, uint64_t size, uint64_t gpa, uint8_t perm,
		   bool reply);

/* One IOTLB message of a batch (sc_vu_fe_iotlb_batch): as sc_vu_fe_iotlb's arguments. */
struct sc_vu_fe_iotlb_op {
	uint8_t type, perm;
	uint64_t iova, size, gpa;
};

/*
 * BATCH_BEGIN, the n messages of ops, BATCH_END asking for an ack, written
 * with one send (so the back end may take them in one go), without
 * waiting for the ack (a lazy guest's flush: its IOVAs come back once the
 * ack does, the I/O goes on meanwhile). Collect the ack with
 * sc_vu_fe_iotlb_ack; until then send nothing else that is answered
 * (replies come in order). n is at most SC_VU_FE_IOTLB_BATCH_MAX.
 * Returns 0 or a negative errno.
 */
#define SC_VU_FE_IOTLB_BATCH_MAX 16
int sc_vu_fe_iotlb_batch(struct sc_vu_fe *fe, const struct sc_vu_fe_iotlb_op *ops, unsigned n);

/*
 * Take the ack of the oldest sc_vu_fe_iotlb_batch if it has come: 0 (the
 * back end applied it), its errno as a negative value, -EPROTO, or -EAGAIN
 * if it has not come yet (never blocks).
 */
int sc_vu_fe_iotlb_ack(struct sc_vu_fe *fe);

/* Tell the driver it may kick queue q if the back end asked (an eventfd write). */
void sc_vu_fe_kick(struct sc_vu_fe *fe, unsigned q);

/* Stop the rings (GET_VRING_BASE) and disconnect. */
void sc_vu_fe_close(struct sc_vu_fe *fe);

#endif
