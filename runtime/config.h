/* SPDX-License-Identifier: MIT */
/*
 * The config file of sidecored (INI, read with libinih):
 *
 *   [sidecore]
 *   cpus = 1,3            ; sidecore cpus, a cpu list ("2-5,7"), or auto; required
 *   count = 2             ; with cpus = auto: how many sidecores to choose
 *   guest_cpus = 0,2      ; the guests' cpus: never a sidecore, never chosen by auto
 *   idle = adaptive       ; spin (never sleep), adaptive (spin idle_spin_us, then sleep), sleep (at once)
 *   iowq_cpus = auto      ; where io_uring's workers run: auto (away from the sidecores), none, or a list
 *   stats_socket = PATH   ; the stats socket; default: sidecored.sock beside the first device socket; none
 *   idle_spin_us = 200    ; spin this long idle before sleeping (0: at once)
 *   budget = 32           ; requests per queue per round, 1..1024
 *   turn_us = 2           ; time a queue's turn may take, 1..1000000 (devices with costly requests end it then)
 *   control_timeout_ms = 5000 ; a front end's message, reply or first ring must come within this
 *   rebalance = yes       ; move auto queues from a busy sidecore to an idle one (runtime/rebalance.h)
 *   rebalance_interval_ms = 1000 ; how often the load is measured, 100..60000
 *   rebalance_busy = 90   ; busy share (%) that makes a sidecore hot, 2..100
 *   rebalance_idle = 50   ; busy share (%) at or below which it is idle, 0..99, below rebalance_busy
 *   rebalance_intervals = 3 ; both for this many intervals in a row, 1..16
 *
 *   [blk.NAME]            ; one section per disk: TYPE.NAME, TYPE is blk
 *   socket = /run/sidecore/NAME.sock   ; vhost-user socket, required
 *   backing = /var/lib/NAME.img        ; file or block device, or ram:SIZE (a RAM disk, 4K..1024G); required
 *   queues = 1            ; 1..64
 *   queue_size = 256      ; a power of two in 64..32768
 *   read_only = no        ; yes/no/true/false/1/0
 *   direct = no           ; open the backing with O_DIRECT
 *   iopoll = no           ; polled io_uring completions (needs direct = yes; a file that cannot be
 *                         ; polled says so once and is served with interrupt completions)
 *   fixed_buffers = yes   ; direct disks: register guest memory with io_uring (pins all of it)
 *   delay_us = 0          ; hold each completion this long after its request (tests, benchmarks)
 *   sidecore = auto       ; the sidecore cpu(s) its queues run on (from cpus), or auto
 *   numa_node = auto      ; the NUMA node of its disk; auto: from the backing's block device in sysfs
 *   mmap = yes            ; a backing on tmpfs/ramfs/hugetlbfs is mapped and copied by memcpy; no: system calls
 *   ; its vIOMMU (a guest behind QEMU's vIOMMU: vhost-user IOTLB), struct sc_iommu_config
 *   iommu_teardown = strict ; strict: an INVALIDATE is acked once no sidecore can use the entry;
 *                           ; optimistic: acked at once, the entry goes within iommu_window_ms
 *   iommu_window_ms = 2   ; optimistic only: how long an invalidated entry may still translate, 1..1000
 *   iommu_isolation = no  ; yes: map into sidecored only the guest pages the IOTLB grants (optimistic: and the dying entries)
 *   iotlb_entries = 65536 ; IOTLB entries (mappings) the front end may install, 1..65536
 *   iotlb_miss_ms = 3000  ; a miss the front end leaves unanswered this long breaks its queue, 10..600000
 *
 *   [net.NAME]            ; one section per NIC: virtio-net on a DPDK port
 *   socket = /run/sidecore/NAME.sock   ; vhost-user socket, required
 *   port = net_tap0,iface=tap0         ; DPDK vdev string (net_tap, net_af_packet, net_ring, net_null), required
 *   queues = 1            ; rx/tx queue pairs, 1..16
 *   queue_size = 256      ; largest ring the front end may use, a power of two in 64..32768
 *   mac = 52:54:00:12:34:56 ; the guest's MAC; default: 52:54:00 and three bytes from NAME
 *   mtu = 1500            ; 68..9000
 *   sidecore = auto       ; the sidecore cpu(s) its pairs run on (from cpus), or auto
 *   numa_node = auto      ; where its mbufs live; auto: DPDK's choice
 *
 * Values are one line each: a line must fit inih's line buffer (198
 * characters), and an indented line after a key is refused (inih would
 * read it as a continuation of that key's value).
 *
 * Every error is one line: "PATH:LINE: what is wrong; what to do".
 * Nothing here is thread-aware: call from the thread that starts the service.
 */
#ifndef SC_RUNTIME_CONFIG_H
#define SC_RUNTIME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SC_CONFIG_MAX_DEVICES 64
#define SC_CONFIG_MAX_CPUS 256
#define SC_CONFIG_MAX_DEVICE_CPUS 64   /* sidecore = ... of one device: at most one per queue */
#define SC_CONFIG_STATS_DIR "/run/sidecore"
#define SC_CONFIG_STATS_NAME "sidecored.sock"

/* What a sidecore does when its queues are empty ([sidecore] idle). */
enum sc_idle_policy {
	SC_IDLE_ADAPTIVE,   /* spin idle_spin_us, then re-arm notifications and sleep */
	SC_IDLE_SPIN,       /* never sleep: lowest latency, a whole cpu always */
	SC_IDLE_SLEEP,      /* sleep as soon as the queues are empty (the vhost model) */
};

/* Where io_uring's io-wq workers may run ([sidecore] iowq_cpus). */
enum sc_iowq_policy {
	SC_IOWQ_AUTO,       /* away from the sidecores (and guest cpus, where others remain) */
	SC_IOWQ_NONE,       /* wherever the kernel puts them */
	SC_IOWQ_LIST,       /* on iowq_cpus */
};

/* A disk's vIOMMU settings ([blk.NAME] iommu_* and iotlb_* keys). */
struct sc_iommu_config {
	bool optimistic;         /* iommu_teardown = optimistic */
	unsigned window_ms;      /* iommu_window_ms */
	unsigned iotlb_entries;  /* for sc_vu_device_ops.iotlb_max */
	unsigned iotlb_miss_ms;  /* for sc_vu_device_ops.iotlb_miss_ms */
	int window_line;         /* of iommu_window_ms, 0 if not given */
	bool isolation;          /* iommu_isolation: for sc_vu_device_ops.iotlb_isolation */
	int isolation_line;      /* of iommu_isolation, 0 if not given */
};
#define SC_IOMMU_CONFIG_DEFAULT \
	((struct sc_iommu_config){ .window_ms = 2, .iotlb_entries = 65536, .iotlb_miss_ms = 3000 })

struct sc_blk_config {
	char name[64];           /* NAME of [blk.NAME]: letters, digits, '_', '-' */
	char socket[108];        /* sizeof(sun_path) */
	char backing[4096];
	unsigned queues, queue_size;
	bool read_only, direct, iopoll;
	bool mmap;               /* serve a memory-backed backing through its mapping (sc_blk_backend_unmap if not) */
	uint64_t ram_bytes;      /* backing = ram:SIZE: its size in bytes; 0 for a path */
	bool fixed_buffers;      /* direct disks: register guest memory with io_uring (default yes) */
	int iopoll_line;         /* of 'iopoll', 0 if not given */
	uint64_t delay_ns;       /* delay_us, for sc_blk_backend.delay_ns; 0: off */
	int line;                /* of its section header, for later errors */
	int sidecores[SC_CONFIG_MAX_DEVICE_CPUS];   /* sidecore = LIST; nsidecores 0: auto */
	int nsidecores;
	int sidecore_line;       /* of 'sidecore', 0 if not given */
	int numa_node;           /* numa_node = N; -1: auto */
	int numa_line;
	struct sc_iommu_config iommu;
};

#define SC_CONFIG_MAX_NET 16

struct sc_net_config {
	char name[64];           /* NAME of [net.NAME] */
	char socket[108];
	char port[192];          /* DPDK vdev string */
	unsigned queues, queue_size, mtu;
	uint8_t mac[6];
	int line;                /* of its section header */
	int port_line;           /* of 'port', 0 if not given */
	int sidecores[SC_CONFIG_MAX_DEVICE_CPUS];   /* nsidecores 0: auto */
	int nsidecores;
	int sidecore_line;
	int numa_node;           /* -1: auto */
};

struct sc_config {
	char path[4096];         /* the file, as given: the PATH of every error */
	int cpus[SC_CONFIG_MAX_CPUS];
	int ncpus;
	uint64_t idle_spin_ns;
	unsigned budget;
	uint64_t turn_ns;        /* a queue's turn, in time (sc_poller_config.turn_ns) */
	unsigned control_timeout_ms;   /* vhost-user control timeout, 10..600000 */
	struct sc_blk_config blk[SC_CONFIG_MAX_DEVICES];
	int nblk;
	struct sc_net_config net[SC_CONFIG_MAX_NET];
	int nnet;
	int cpus_line;           /* of the 'cpus' key */
	bool cpus_auto;          /* cpus = auto: the plan chooses count cpus */
	int count, count_line;
	int guest_cpus[SC_CONFIG_MAX_CPUS];
	int nguest_cpus, guest_cpus_line;
	enum sc_idle_policy idle;
	int idle_line;
	enum sc_iowq_policy iowq;
	int iowq_cpus[SC_CONFIG_MAX_CPUS];
	int niowq_cpus, iowq_line;
	char stats_socket[108];  /* sizeof(sun_path); "" when stats_socket = none */
	int stats_socket_line;
	bool rebalance;
	unsigned rebalance_interval_ms, rebalance_busy, rebalance_idle, rebalance_intervals;   /* percent for busy, idle */
	/* Lines of the [sidecore] header and of keys not named above, 0 if not given (sidecored's reload names them). */
	int sidecore_line, idle_spin_line, budget_line, turn_line, control_timeout_line, rebalance_idle_line;
};

/*
 * Read the config file at path into *c (cleared first; about 270 KiB, so not
 * on a small stack) and check each section, key and value: syntax, ranges,
 * duplicates, required keys. Defaults fill what the file leaves out. Touches
 * no path the file names (see sc_config_check_paths).
 *
 * Returns 0, or a negative errno with one line in err (errlen bytes,
 * truncated if short): -ENOENT/-EACCES/... if the file cannot be opened or
 * read ("PATH: cannot open: ..."); -EINVAL for syntax, unknown or missing
 * sections and keys, and values that are not what the key takes; -ERANGE for
 * numbers out of range; -EEXIST for a key, device or section given twice;
 * -ENAMETOOLONG for a socket or backing path that does not fit; -E2BIG for
 * more than SC_CONFIG_MAX_DEVICES devices or SC_CONFIG_MAX_CPUS cpus, or a
 * line too long for inih. The first error in the file is the one reported.
 */
int sc_config_load(const char *path, struct sc_config *c, char *err, size_t errlen);

/*
 * Check what a loaded config names, in the file's order: each backing exists,
 * is a regular file or block device, is readable, and writable unless
 * read_only; each socket's directory exists and is writable, and the socket
 * path is free or an old socket; no two devices share a socket, and no
 * writable backing is shared with another device.
 *
 * Returns 0, or a negative errno with one line in err naming the device's
 * section line: the errno of the failing stat/access (-ENOENT, -EACCES,
 * -EROFS, ...), -EINVAL for a backing that is neither a file nor a block
 * device, -ENOTDIR for a socket directory that is not one, -EEXIST for a
 * socket path taken by a non-socket, a shared socket or a shared backing.
 */
int sc_config_check_paths(const struct sc_config *c, char *err, size_t errlen);

#endif
