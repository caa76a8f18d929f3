/* SPDX-License-Identifier: MIT */
/*
 * service: sidecored running a config file. It owns the sidecores (one
 * poller per plan cpu, for the life of the process), the devices (a
 * vhost-user server and a blk backend per [blk.NAME]), the stats socket,
 * and the rebalancer thread that moves auto queues off a busy sidecore
 * (runtime/rebalance.h). A reload re-reads the file and changes the device
 * list in place: unchanged devices keep their front ends and running rings.
 *
 * Every failure prints one line (file:line, socket path, cpu) to stderr.
 * All calls come from one thread (sidecored's main thread).
 */
#ifndef SC_RUNTIME_SERVICE_H
#define SC_RUNTIME_SERVICE_H

struct sc_service;

/*
 * Load and check the config at path, plan it on this machine, start the
 * sidecores, every device's socket and control thread, the stats socket
 * and the rebalancer. Block the signals the caller waits for first: the
 * threads inherit the mask. Returns 0 and *out, or a negative errno after
 * printing why (-EINVAL for the file or the plan).
 */
int sc_service_start(const char *path, struct sc_service **out);

/*
 * Re-read the config file (SIGHUP). New [blk.NAME] sections are started,
 * removed ones stopped (front end disconnected, socket removed), a changed
 * one restarted; a section that did not change keeps its connection and
 * rings. rebalance* keys apply at once. Any other [sidecore] change, an
 * error in the file or its plan leaves everything as it runs. Returns 0,
 * or a negative errno after printing one line: what, file:line, and that
 * the running config is kept (-EINVAL file or plan, -EBUSY a [sidecore]
 * key that cannot change while running). A device that passed the checks
 * but cannot start (its backing vanished since) is reported and left out;
 * the rest of the reload goes on, and 0 is returned.
 */
int sc_service_reload(struct sc_service *svc);

/* "serving N disks on M sidecores", for sd_notify's STATUS. */
void sc_service_status(const struct sc_service *svc, char *buf, int len);

/* Stop everything cleanly (rings detached, in-flight requests finished, sockets removed) and free svc. */
void sc_service_stop(struct sc_service *svc);

#endif
