/* SPDX-License-Identifier: MIT */
/* Shared test setup: memfd guest memory, a driver ring in it, the matching vqueue config. */
#include "harness.h"

#include <errno.h>
#include <string.h>

int t_guest_init(struct t_guest *g, uint64_t gpa, uint64_t size)
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

void t_guest_fini(struct t_guest *g)
{
	sc_mem_fini(&g->mem);
	g->base = NULL;
}

void *t_ptr(const struct t_guest *g, uint64_t gpa, uint64_t len)
{
	uint64_t off = gpa - g->gpa;   /* huge when gpa < g->gpa */

	if (!g->base || off > g->size || len > g->size - off)
		return NULL;
	return g->base + off;
}

void *t_alloc(struct t_guest *g, uint64_t len, uint64_t align, uint64_t *gpa)
{
	uint64_t at = (g->next + align - 1) & ~(align - 1);
	void *p = t_ptr(g, at, len);

	if (!p || at < g->next)
		return NULL;
	g->next = at + len;
	*gpa = at;
	return p;
}

int t_ring_init(struct t_guest *g, struct sc_drv_vq *dvq, uint64_t gpa, uint16_t size,
		 uint64_t features)
{
	void *p = t_ptr(g, gpa, sc_drv_vq_ring_bytes(size));

	if (!p)
		return -EFAULT;
	return sc_drv_vq_init(dvq, p, gpa, size, features);
}

void t_vq_config(struct t_guest *g, const struct sc_drv_vq *dvq, uint64_t features,
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

int t_ring(struct t_guest *g, struct sc_drv_vq *dvq, uint16_t size, uint64_t features, struct sc_vq_config *cfg)
{
	uint64_t gpa;
	int ret;

	if (!t_alloc(g, sc_drv_vq_ring_bytes(size), 4096, &gpa))
		return -ENOMEM;
	ret = t_ring_init(g, dvq, gpa, size, features);
	if (ret < 0)
		return ret;
	t_vq_config(g, dvq, features, cfg);
	return 0;
}

int t_guest_add(struct t_guest *g, uint64_t gpa, uint64_t size)
{
	int fd = sc_mem_memfd_create("t-guest", size);

	if (fd < 0)
		return fd;
	return sc_mem_add_fd(&g->mem, gpa, size, fd, 0, SC_PERM_RW);   /* takes fd, also on failure */
}
