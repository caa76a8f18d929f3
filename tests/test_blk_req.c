/* SPDX-License-Identifier: MIT */
/*
 * The virtio-blk request parser on hand-built chains, no ring: one row per
 * refusal reason (and the accepted shapes beside them), then the fields an
 * accepted request yields.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "devices/blk_req.h"

#define CAP 2048ull   /* sectors */
#define RO  (1ull << SC_VIRTIO_BLK_F_RO)
#define ALL ((1ull << SC_VIRTIO_BLK_F_DISCARD) | (1ull << SC_VIRTIO_BLK_F_WRITE_ZEROES))

/* A request's shape: what the chain holds and what the disk allows. */
struct row {
	const char *name;
	uint32_t type;
	uint64_t sector;
	uint32_t hdr_len;        /* readable header bytes: 16 unless the row is about a short one */
	uint32_t out_data;       /* readable bytes after the header (OUT data) */
	uint32_t in_data;        /* writable bytes before the status byte (IN data) */
	bool no_status;          /* no writable byte at all */
	unsigned segs;           /* data split into this many segments (0 or 1: one) */
	bool range;              /* a DISCARD/WRITE_ZEROES segment follows the header */
	uint64_t rsector;
	uint32_t rnum, rflags;
	uint64_t features;
	unsigned seg_max;        /* 0: 8 */
	uint32_t size_max;
	int want;
	uint8_t want_status;
};

static const struct row rows[] = {
	{ "read", SC_VIRTIO_BLK_T_IN, 8, 16, 0, 4096, .want = 0 },
	{ "write", SC_VIRTIO_BLK_T_OUT, 8, 16, 4096, 0, .want = 0 },
	{ "write_to_the_last_sector", SC_VIRTIO_BLK_T_OUT, CAP - 1, 16, 512, 0, .want = 0 },
	{ "flush", SC_VIRTIO_BLK_T_FLUSH, 0, 16, 0, 0, .want = 0 },
	{ "get_id", SC_VIRTIO_BLK_T_GET_ID, 0, 16, 0, 20, .want = 0 },
	{ "discard", SC_VIRTIO_BLK_T_DISCARD, 0, 16, .range = true, .rsector = 8, .rnum = 8, .features = ALL, .want = 0 },
	{ "write_zeroes_unmap", SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, .range = true, .rsector = 8, .rnum = 8,
	  .rflags = 1, .features = ALL, .want = 0 },
	{ "no_status_byte", SC_VIRTIO_BLK_T_IN, 0, 16, 0, 0, .no_status = true, .want = -ENOBUFS },
	{ "short_header", SC_VIRTIO_BLK_T_IN, 0, 8, 0, 512, .want = -EBADMSG, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "unknown_type", 99, 0, 16, 0, 0, .want = -EOPNOTSUPP, .want_status = SC_VIRTIO_BLK_S_UNSUPP },
	{ "discard_not_offered", SC_VIRTIO_BLK_T_DISCARD, 0, 16, .range = true, .rnum = 8, .want = -EOPNOTSUPP,
	  .want_status = SC_VIRTIO_BLK_S_UNSUPP },
	{ "write_zeroes_not_offered", SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, .range = true, .rnum = 8,
	  .want = -EOPNOTSUPP, .want_status = SC_VIRTIO_BLK_S_UNSUPP },
	{ "write_on_read_only", SC_VIRTIO_BLK_T_OUT, 0, 16, 512, 0, .features = RO, .want = -EROFS,
	  .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "discard_on_read_only", SC_VIRTIO_BLK_T_DISCARD, 0, 16, .range = true, .rnum = 8, .features = RO,
	  .want = -EROFS, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "read_not_whole_sectors", SC_VIRTIO_BLK_T_IN, 0, 16, 0, 100, .want = -EINVAL, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "write_not_whole_sectors", SC_VIRTIO_BLK_T_OUT, 0, 16, 513, 0, .want = -EINVAL, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "read_beyond_capacity", SC_VIRTIO_BLK_T_IN, CAP, 16, 0, 512, .want = -ERANGE, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "sector_plus_length_wraps", SC_VIRTIO_BLK_T_OUT, UINT64_MAX, 16, 512, 0, .want = -ERANGE,
	  .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "more_segments_than_seg_max", SC_VIRTIO_BLK_T_IN, 0, 16, 0, 4096, .segs = 8, .seg_max = 4, .want = -E2BIG,
	  .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "segment_larger_than_size_max", SC_VIRTIO_BLK_T_OUT, 0, 16, 4096, 0, .size_max = 2048, .want = -EFBIG,
	  .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "discard_without_its_segment", SC_VIRTIO_BLK_T_DISCARD, 0, 16, 8, 0, .features = ALL, .want = -EMSGSIZE,
	  .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "discard_over_max_sectors", SC_VIRTIO_BLK_T_DISCARD, 0, 16, .range = true, .rnum = 1025, .features = ALL,
	  .want = -EOVERFLOW, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "discard_beyond_capacity", SC_VIRTIO_BLK_T_DISCARD, 0, 16, .range = true, .rsector = CAP, .rnum = 1,
	  .features = ALL, .want = -ERANGE, .want_status = SC_VIRTIO_BLK_S_IOERR },
	{ "discard_with_unmap_flag", SC_VIRTIO_BLK_T_DISCARD, 0, 16, .range = true, .rnum = 8, .rflags = 1,
	  .features = ALL, .want = -EPROTO, .want_status = SC_VIRTIO_BLK_S_UNSUPP },
	{ "write_zeroes_unknown_flag", SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, .range = true, .rnum = 8, .rflags = 2,
	  .features = ALL, .want = -EPROTO, .want_status = SC_VIRTIO_BLK_S_UNSUPP },
};

/* Buffers one row's chain points into. */
static uint8_t hdr_buf[32], out_buf[8192], in_buf[8192], status_buf[4];
static struct iovec iov[32];
static struct iovec data[8];

/* Build the chain a row describes: header (+ range or OUT data), then IN data, then the status byte. */
static struct sc_vq_elem build(const struct row *r)
{
	struct sc_virtio_blk_outhdr h = { .type = r->type, .sector = r->sector };
	struct sc_virtio_blk_discard_write_zeroes seg = { .sector = r->rsector, .num_sectors = r->rnum, .flags = r->rflags };
	unsigned segs = r->segs ? r->segs : 1, n = 0;
	struct sc_vq_elem e = { .iov = iov, .iov_max = 32 };

	memcpy(hdr_buf, &h, sizeof(h));
	iov[n++] = (struct iovec){ hdr_buf, r->hdr_len };
	if (r->range) {
		memcpy(out_buf, &seg, sizeof(seg));
		iov[n++] = (struct iovec){ out_buf, sizeof(seg) };
	}
	for (unsigned i = 0; r->out_data && i < segs; i++)
		iov[n++] = (struct iovec){ out_buf + i * (r->out_data / segs), r->out_data / segs + (i == segs - 1 ? r->out_data % segs : 0) };
	e.out_num = (uint16_t)n;
	for (unsigned i = 0; i < n; i++)
		e.out_len += (uint32_t)iov[i].iov_len;
	for (unsigned i = 0; r->in_data && i < segs; i++)
		iov[n++] = (struct iovec){ in_buf + i * (r->in_data / segs), r->in_data / segs + (i == segs - 1 ? r->in_data % segs : 0) };
	if (!r->no_status)
		iov[n++] = (struct iovec){ status_buf, 1 };
	e.in_num = (uint16_t)(n - e.out_num);
	for (unsigned i = e.out_num; i < n; i++)
		e.in_len += (uint32_t)iov[i].iov_len;
	return e;
}

static struct sc_blk_req_limits limits(const struct row *r)
{
	return (struct sc_blk_req_limits){ .capacity = CAP, .features = r->features,
		.seg_max = r->seg_max ? r->seg_max : 8, .size_max = r->size_max, .max_discard_sectors = 1024 };
}

Test(blk_req, each_row_gets_its_answer)
{
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		struct sc_vq_elem e = build(r);
		struct sc_blk_req_limits lim = limits(r);
		struct sc_blk_parsed p = { .iov = data };
		int ret = sc_blk_req_parse(&e, &lim, &p);

		cr_expect_eq(ret, r->want, "%s: got %d, want %d", r->name, ret, r->want);
		if (r->want == -ENOBUFS) {
			cr_expect_null(p.status_byte, "%s: no status byte", r->name);
			continue;
		}
		cr_expect_eq(p.status_byte, status_buf, "%s: the status goes in the last writable byte", r->name);
		if (r->want)
			cr_expect_eq(p.status, r->want_status, "%s: status %u, want %u", r->name, p.status, r->want_status);
		else
			cr_expect_eq(p.type, r->type, "%s: type", r->name);
	}
}

Test(blk_req, read_yields_its_segments_without_the_status)
{
	const struct row r = { "read", SC_VIRTIO_BLK_T_IN, 16, 16, 0, 3 * 512, .segs = 3 };
	struct sc_vq_elem e = build(&r);
	struct sc_blk_req_limits lim = limits(&r);
	struct sc_blk_parsed p = { .iov = data };

	cr_assert_eq(sc_blk_req_parse(&e, &lim, &p), 0);
	cr_expect_eq(p.sector, 16);
	cr_expect_eq(p.bytes, 3 * 512);
	cr_assert_eq(p.niov, 3);
	for (unsigned i = 0; i < 3; i++)
		cr_expect(data[i].iov_base == in_buf + i * 512 && data[i].iov_len == 512, "segment %u", i);
}

Test(blk_req, write_yields_its_data_after_the_header)
{
	const struct row r = { "write", SC_VIRTIO_BLK_T_OUT, 4, 16, 1024, 0, .want = 0 };
	struct sc_vq_elem e = build(&r);
	struct sc_blk_req_limits lim = limits(&r);
	struct sc_blk_parsed p = { .iov = data };

	cr_assert_eq(sc_blk_req_parse(&e, &lim, &p), 0);
	cr_expect_eq(p.bytes, 1024);
	cr_assert_eq(p.niov, 1);
	cr_expect(data[0].iov_base == out_buf && data[0].iov_len == 1024);
}

Test(blk_req, header_and_data_in_one_buffer_are_cut_apart)
{
	static uint8_t buf[16 + 512];
	struct sc_virtio_blk_outhdr h = { .type = SC_VIRTIO_BLK_T_OUT, .sector = 1 };
	struct iovec v[2] = { { buf, sizeof(buf) }, { status_buf, 1 } };
	struct sc_vq_elem e = { .iov = v, .out_num = 1, .in_num = 1, .out_len = sizeof(buf), .in_len = 1 };
	struct sc_blk_req_limits lim = { .capacity = CAP, .seg_max = 8 };
	struct sc_blk_parsed p = { .iov = data };

	memcpy(buf, &h, sizeof(h));
	cr_assert_eq(sc_blk_req_parse(&e, &lim, &p), 0);
	cr_assert_eq(p.niov, 1);
	cr_expect(data[0].iov_base == buf + 16 && data[0].iov_len == 512);
}

Test(blk_req, status_byte_skips_trailing_empty_segments)
{
	struct sc_virtio_blk_outhdr h = { .type = SC_VIRTIO_BLK_T_FLUSH };
	struct iovec v[3] = { { &h, sizeof(h) }, { status_buf, 1 }, { in_buf, 0 } };
	struct sc_vq_elem e = { .iov = v, .out_num = 1, .in_num = 2, .out_len = sizeof(h), .in_len = 1 };
	struct sc_blk_req_limits lim = { .capacity = CAP };
	struct sc_blk_parsed p = { .iov = NULL };

	cr_assert_eq(sc_blk_req_parse(&e, &lim, &p), 0);
	cr_expect_eq(p.status_byte, status_buf);
}

Test(blk_req, ranges_and_get_id_report_what_to_do)
{
	const struct row wz = { "wz", SC_VIRTIO_BLK_T_WRITE_ZEROES, 0, 16, .range = true, .rsector = 100, .rnum = 4,
				.rflags = 1, .features = ALL };
	const struct row id = { "id", SC_VIRTIO_BLK_T_GET_ID, 0, 16, 0, 64, .want = 0 };
	struct sc_vq_elem e = build(&wz);
	struct sc_blk_req_limits lim = limits(&wz);
	struct sc_blk_parsed p = { .iov = data };

	cr_assert_eq(sc_blk_req_parse(&e, &lim, &p), 0);
	cr_expect(p.unmap && p.sector == 100 && p.bytes == 4 * 512);
	e = build(&id);
	lim = limits(&id);
	cr_assert_eq(sc_blk_req_parse(&e, &lim, &p), 0);
	cr_expect_eq(p.bytes, SC_VIRTIO_BLK_ID_BYTES, "an ID is at most 20 bytes");
}
