/* SPDX-License-Identifier: MIT */
/* The virtio-blk request parser (virtio 1.2 §5.2.6); see blk_req.h. */
#include <errno.h>

#include "common/compiler.h"
#include "devices/blk_req.h"

/* [sector, sector + bytes / 512) is whole sectors inside the disk, written so nothing can overflow. */
static int check_range(const struct sc_blk_req_limits *lim, uint64_t sector, uint64_t bytes)
{
	if (bytes % SC_VIRTIO_BLK_SECTOR_SIZE)
		return -EINVAL;
	if (sector > lim->capacity || bytes / SC_VIRTIO_BLK_SECTOR_SIZE > lim->capacity - sector)
		return -ERANGE;
	return 0;
}

/*
 * Copy the segments of src that lie in [skip, total - trim) into dst.
 * Returns how many, or -E2BIG if more than max.
 */
static int iov_slice(const struct iovec *src, unsigned n, size_t skip, size_t trim, struct iovec *dst, unsigned max)
{
	size_t total = 0, end;
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		total += src[i].iov_len;
	end = total - trim;
	for (size_t i = 0, pos = 0; i < n && pos < end; pos += src[i].iov_len, i++) {
		size_t a = pos, b = pos + src[i].iov_len;
		if (b <= skip || a == b)
			continue;
		if (k == max)
			return -E2BIG;
		size_t from = a < skip ? skip - a : 0, to = b > end ? end - a : src[i].iov_len;
		dst[k].iov_base = (char *)src[i].iov_base + from;
		dst[k].iov_len = to - from;
		k++;
	}
	return (int)k;
}

/* Slice the data of IN (from the writable part) or OUT (from the readable part) and check each segment. */
static int slice_data(const struct sc_vq_elem *e, const struct sc_blk_req_limits *lim, struct sc_blk_parsed *p)
{
	int n;

	if (!p->iov)
		return 0;
	if (p->type == SC_VIRTIO_BLK_T_IN)
		n = iov_slice(e->iov + e->out_num, e->in_num, 0, 1, p->iov, lim->seg_max);
	else
		n = iov_slice(e->iov, e->out_num, sizeof(struct sc_virtio_blk_outhdr), 0, p->iov, lim->seg_max);
	if (n < 0)
		return n;
	p->niov = (unsigned)n;
	/* §5.2.4: with SIZE_MAX no segment is larger than size_max. */
	for (unsigned i = 0; lim->size_max && i < p->niov; i++)
		if (p->iov[i].iov_len > lim->size_max)
			return -EFBIG;
	return 0;
}

/* DISCARD and WRITE_ZEROES: one segment (max_*_seg = 1), flags as §5.2.6.2 allows. */
static int parse_range(const struct sc_vq_elem *e, const struct sc_blk_req_limits *lim, struct sc_blk_parsed *p)
{
	struct sc_virtio_blk_discard_write_zeroes seg;
	bool discard = p->type == SC_VIRTIO_BLK_T_DISCARD;

	if (e->out_len - sizeof(struct sc_virtio_blk_outhdr) != sizeof(seg))
		return -EMSGSIZE;
	sc_iov_copy_from(e->iov, e->out_num, sizeof(struct sc_virtio_blk_outhdr), &seg, sizeof(seg));
	sc_barrier();
	/* §5.2.6.2: DISCARD has no flags; WRITE_ZEROES may only ask to unmap (bit 0). UNSUPP, not IOERR. */
	if ((discard ? seg.flags : seg.flags & ~1u) != 0) {
		p->status = SC_VIRTIO_BLK_S_UNSUPP;
		return -EPROTO;
	}
	if (seg.num_sectors > lim->max_discard_sectors)
		return -EOVERFLOW;
	p->unmap = !discard && (seg.flags & 1u);
	p->sector = seg.sector;
	p->bytes = (uint64_t)seg.num_sectors * SC_VIRTIO_BLK_SECTOR_SIZE;
	return check_range(lim, p->sector, p->bytes);
}

/* The feature a request type needs offered, or 0 if it needs none, or -1 for an unknown type. */
static int type_feature(uint32_t type)
{
	switch (type) {
	case SC_VIRTIO_BLK_T_IN:
	case SC_VIRTIO_BLK_T_OUT:
	case SC_VIRTIO_BLK_T_GET_ID:
	/* Served whether or not F_FLUSH is offered: without it the disk is write-through, and a flush is a no-op. */
	case SC_VIRTIO_BLK_T_FLUSH:
		return 0;
	case SC_VIRTIO_BLK_T_DISCARD:
		return SC_VIRTIO_BLK_F_DISCARD;
	case SC_VIRTIO_BLK_T_WRITE_ZEROES:
		return SC_VIRTIO_BLK_F_WRITE_ZEROES;
	default:
		return -1;
	}
}

int sc_blk_req_parse(const struct sc_vq_elem *e, const struct sc_blk_req_limits *lim, struct sc_blk_parsed *p)
{
	struct sc_virtio_blk_outhdr h;
	const struct iovec *in = e->iov + e->out_num;
	int f;

	p->status = SC_VIRTIO_BLK_S_IOERR;
	p->status_byte = NULL;
	p->unmap = false;
	p->niov = 0;
	p->bytes = 0;
	p->sector = 0;
	p->type = UINT32_MAX;
	/* §5.2.6: the status is the last byte of the device-writable part; empty segments may trail it. */
	if (sc_unlikely(e->in_len < 1))
		return -ENOBUFS;
	for (unsigned i = e->in_num; i-- > 0;)
		if (in[i].iov_len) {
			p->status_byte = (uint8_t *)in[i].iov_base + in[i].iov_len - 1;
			break;
		}
	if (sc_unlikely(e->out_len < sizeof(h)))
		return -EBADMSG;

	/* Copy, then check, then use: only the copy is read from here on (the barrier pins that). */
	sc_iov_copy_from(e->iov, e->out_num, 0, &h, sizeof(h));
	sc_barrier();
	p->type = h.type;
	f = type_feature(h.type);
	if (f < 0) {
		p->status = SC_VIRTIO_BLK_S_UNSUPP;
		return -EOPNOTSUPP;
	}
	/* §5.2.6.2: with F_RO a write fails with IOERR and writes nothing; DISCARD and WRITE_ZEROES write too. */
	bool writes = h.type == SC_VIRTIO_BLK_T_OUT || f > 0;
	if (writes && (lim->features & (1ull << SC_VIRTIO_BLK_F_RO)))
		return -EROFS;
	if (f > 0 && !(lim->features & (1ull << f))) {
		p->status = SC_VIRTIO_BLK_S_UNSUPP;
		return -EOPNOTSUPP;
	}

	switch (h.type) {
	case SC_VIRTIO_BLK_T_IN:
	case SC_VIRTIO_BLK_T_OUT: {
		int ret;
		p->sector = h.sector;
		p->bytes = h.type == SC_VIRTIO_BLK_T_IN ? e->in_len - 1u : e->out_len - sizeof(h);
		ret = check_range(lim, p->sector, p->bytes);
		if (ret == 0)
			ret = slice_data(e, lim, p);
		return ret;
	}
	case SC_VIRTIO_BLK_T_GET_ID:
		p->bytes = e->in_len - 1u < SC_VIRTIO_BLK_ID_BYTES ? e->in_len - 1u : SC_VIRTIO_BLK_ID_BYTES;
		return 0;
	case SC_VIRTIO_BLK_T_FLUSH:
		return 0;
	default:
		return parse_range(e, lim, p);
	}
}
