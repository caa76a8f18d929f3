/* SPDX-License-Identifier: MIT */
/* Shared test setup: memfd guest memory, a driver ring in it, the matching vqueue config. */
#include "ring_helpers.h"

#include <errno.h>
#include <string.h>

int rh_guest_init(struct rh_guest *g, uint64_t gpa, uint64_t size)
{
	memset(g, 0, sizeof(*g));
	sc_mem_init(&g->mem);
	int fd = sc_mem_memfd_create("rh-guest", size);
	if (fd < 0)
		return fd;
	int ret = sc_mem_add_fd(&g->mem, gpa, size, fd, 0, SC_PERM_RW);   /* takes fd, also on failure */
	if (ret < 0)
		return ret;
	g->gpa = gpa;
	g->size = size;
	g->base = g->mem.regions[0].hva;
	g->next = gpa;
	return 0;
}

void rh_guest_fini(struct rh_guest *g)
{
	sc_mem_fini(&g->mem);
	g->base = NULL;
}

void *rh_ptr(const struct rh_guest *g, uint64_t gpa, uint64_t len)
{
	uint64_t off = gpa - g->gpa;   /* huge when gpa < g->gpa */

	if (!g->base || off > g->size || len > g->size - off)
		return NULL;
	return g->base + off;
}

void *rh_alloc(struct rh_guest *g, uint64_t len, uint64_t align, uint64_t *gpa)
{
	uint64_t at = (g->next + align - 1) & ~(align - 1);
	void *p = rh_ptr(g, at, len);

	if (!p || at < g->next)
		return NULL;
	g->next = at + len;
	*gpa = at;
	return p;
}

int rh_ring_init(struct rh_guest *g, struct sc_drv_vq *dvq, uint64_t gpa, uint16_t size,
		 uint64_t features)
{
	void *p = rh_ptr(g, gpa, sc_drv_vq_ring_bytes(size));

	if (!p)
		return -EFAULT;
	return sc_drv_vq_init(dvq, p, gpa, size, features);
}

void rh_vq_config(struct rh_guest *g, const struct sc_drv_vq *dvq, uint64_t features,
		  struct sc_vq_config *cfg)
{
	*cfg = (struct sc_vq_config){
		.size = dvq->size,
		.desc_addr = dvq->desc_gpa,
		.avail_addr = dvq->avail_gpa,
		.used_addr = dvq->used_gpa,
		.features = features,
		.last_avail = 0,
		.xlate = sc_mem_xlate(&g->mem),
		.call_fd = -1,
		.err_fd = -1,
		.kick_fd = -1,
	};
}
