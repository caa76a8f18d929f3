/* SPDX-License-Identifier: MIT */
#include "runtime/plan.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "polling/polling.h"

struct build {
	struct sc_plan *plan;
	const struct sc_config *cfg;
	const struct sc_topology *t;
	FILE *out;
};

static void finding(struct build *b, bool error, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void finding(struct build *b, bool error, int line, const char *fmt, ...)
{
	va_list ap;

	if (error)
		b->plan->errors++;
	else
		b->plan->warnings++;
	if (!b->out)
		return;
	if (line)
		fprintf(b->out, "%s:%d: %s: ", b->cfg->path, line, error ? "error" : "warning");
	else
		fprintf(b->out, "%s: %s: ", b->cfg->path, error ? "error" : "warning");
	va_start(ap, fmt);
	vfprintf(b->out, fmt, ap);
	va_end(ap);
	fputc('\n', b->out);
}

/* cpus[0..n) as a sorted cpu list ("0-2,5") in buf. */
static const char *list_of(const int *cpus, int n, char *buf, size_t len)
{
	bool set[SC_MAX_CPUS] = { 0 };
	size_t used = 0;

	for (int i = 0; i < n; i++)
		if (cpus[i] >= 0 && cpus[i] < SC_MAX_CPUS)
			set[cpus[i]] = true;
	buf[0] = '\0';
	for (int a = 0; a < SC_MAX_CPUS && used < len; a++) {
		if (!set[a])
			continue;
		int z = a;
		while (z + 1 < SC_MAX_CPUS && set[z + 1])
			z++;
		int k = z > a ? snprintf(buf + used, len - used, "%s%d-%d", used ? "," : "", a, z)
			      : snprintf(buf + used, len - used, "%s%d", used ? "," : "", a);
		if (k < 0)
			break;
		used += (size_t)k;
		a = z;
	}
	if (!used)
		snprintf(buf, len, "none");
	return buf;
}

static bool in(const int *cpus, int n, int cpu)
{
	for (int i = 0; i < n; i++)
		if (cpus[i] == cpu)
			return true;
	return false;
}

/* The online cpus of t (only those this process may use, if allowed_only), as a list for a hint. */
static const char *online_list(const struct sc_topology *t, bool allowed_only, char *buf, size_t len)
{
	int cpus[SC_MAX_CPUS], n = 0;
	for (int i = 0; i < t->ncpus; i++)
		if (!allowed_only || t->cpus[i].allowed)
			cpus[n++] = t->cpus[i].cpu;
	return list_of(cpus, n, buf, len);
}

/*
 * Each cpu of a list exists, is online, and (local) is ours to use. Errors
 * name key and line. Returns how many were bad.
 */
static int check_exist(struct build *b, const int *cpus, int n, const char *key, int line, bool local)
{
	char list[256];
	int bad = 0;

	for (int i = 0; i < n; i++) {
		int cpu = cpus[i];
		const struct sc_cpu_info *c = sc_topology_cpu(b->t, cpu);
		if (!c && cpu < SC_MAX_CPUS && b->t->offline[cpu]) {
			finding(b, true, line, "%s: cpu %d is offline; bring it online "
				"(echo 1 > /sys/devices/system/cpu/cpu%d/online) or choose another", key, cpu, cpu);
			bad++;
		} else if (!c) {
			finding(b, true, line, "%s: cpu %d does not exist on this machine (online cpus: %s); choose another",
				key, cpu, online_list(b->t, false, list, sizeof(list)));
			bad++;
		} else if (local && !c->allowed) {
			finding(b, true, line, "%s: cpu %d is not a cpu this process may use (allowed: %s; taskset or "
				"cgroup cpuset); choose another or widen sidecored's cpus", key, cpu,
				online_list(b->t, true, list, sizeof(list)));
			bad++;
		}
	}
	return bad;
}

static bool shares_core(const struct sc_topology *t, int a, int b)
{
	const struct sc_cpu_info *x = sc_topology_cpu(t, a), *y = sc_topology_cpu(t, b);
	return x && y && a != b && x->core == y->core;
}

static int numa_of(const struct sc_topology *t, int cpu)
{
	const struct sc_cpu_info *c = sc_topology_cpu(t, cpu);
	return c ? c->numa : -1;
}

/*
 * cpus = auto: choose count cpus, each weight outranking the sum below it:
 * off the guests' physical cores, off other chosen sidecores' cores,
 * isolated, not cpu 0 (most housekeeping lands there), on a device's NUMA
 * node, nohz_full; ties to the higher cpu number, so the choice is stable.
 */
static void choose_auto(struct build *b, bool local)
{
	struct sc_plan *p = b->plan;
	const struct sc_config *cfg = b->cfg;

	while (p->nsidecores < cfg->count) {
		int best = -1, best_cpu = -1;
		for (int i = 0; i < b->t->ncpus; i++) {
			const struct sc_cpu_info *c = &b->t->cpus[i];
			bool guest_core = false, sidecore_core = false, dev_node = false;
			if ((local && !c->allowed) || in(cfg->guest_cpus, cfg->nguest_cpus, c->cpu) ||
			    in(p->sidecores, p->nsidecores, c->cpu))
				continue;
			for (int g = 0; g < cfg->nguest_cpus; g++)
				guest_core |= shares_core(b->t, c->cpu, cfg->guest_cpus[g]);
			for (int s = 0; s < p->nsidecores; s++)
				sidecore_core |= shares_core(b->t, c->cpu, p->sidecores[s]);
			for (int d = 0; d < cfg->nblk; d++)
				dev_node |= p->dev_numa[d] == c->numa;
			int score = (guest_core ? 0 : 1000) + (sidecore_core ? 0 : 500) + (c->isolated ? 200 : 0) +
				    (c->cpu ? 50 : 0) + (dev_node ? 10 : 0) + (c->nohz_full ? 2 : 0);
			if (score > best || (score == best && c->cpu > best_cpu)) {
				best = score;
				best_cpu = c->cpu;
			}
		}
		if (best < 0) {
			char list[256];
			finding(b, true, cfg->count_line, "count = %d: only %d cpu%s left for sidecores (guest_cpus: %s); "
				"lower count or free cpus", cfg->count, p->nsidecores, p->nsidecores == 1 ? " is" : "s are",
				list_of(cfg->guest_cpus, cfg->nguest_cpus, list, sizeof(list)));
			return;
		}
		p->sidecores[p->nsidecores++] = best_cpu;
	}
}

static int sidecore_index(const struct sc_plan *p, int cpu)
{
	for (int i = 0; i < p->nsidecores; i++)
		if (p->sidecores[i] == cpu)
			return i;
	return -1;
}

/* Place every queue on the least loaded sidecore it may use. */
static void place_queues(struct build *b)
{
	struct sc_plan *p = b->plan;
	const struct sc_config *cfg = b->cfg;

	for (int d = 0; d < cfg->nblk; d++) {
		const struct sc_blk_config *dev = &cfg->blk[d];
		int allowed[SC_CONFIG_MAX_CPUS], n = 0;
		char list[256];

		for (int i = 0; i < dev->nsidecores; i++) {
			int s = sidecore_index(p, dev->sidecores[i]);
			if (s < 0)
				finding(b, true, dev->sidecore_line, "[blk.%s] sidecore: cpu %d is not a sidecore (cpus: %s); "
					"name one of those, or auto", dev->name, dev->sidecores[i],
					list_of(p->sidecores, p->nsidecores, list, sizeof(list)));
			else
				allowed[n++] = s;
		}
		/* auto: the sidecores on the disk's NUMA node if it has any, else all of them. */
		for (int pass = 0; !dev->nsidecores && !n && pass < 2; pass++)
			for (int s = 0; s < p->nsidecores; s++)
				if (pass || numa_of(b->t, p->sidecores[s]) == p->dev_numa[d])
					allowed[n++] = s;
		if (!n)
			continue;   /* errors said why */
		for (unsigned q = 0; q < dev->queues && q < SC_CONFIG_MAX_DEVICE_CPUS; q++) {
			int best = allowed[0];
			for (int i = 1; i < n; i++) {
				int s = allowed[i];
				bool local = numa_of(b->t, p->sidecores[s]) == p->dev_numa[d];
				bool best_local = numa_of(b->t, p->sidecores[best]) == p->dev_numa[d];
				if (p->load[s] < p->load[best] || (p->load[s] == p->load[best] && local && !best_local))
					best = s;
			}
			p->queue_sidecore[d][q] = (uint8_t)best;
			p->load[best]++;
		}
	}
}

static void check_smt(struct build *b)
{
	const struct sc_plan *p = b->plan;
	const struct sc_config *cfg = b->cfg;

	for (int i = 0; i < p->nsidecores; i++) {
		int s = p->sidecores[i];
		for (int g = 0; g < cfg->nguest_cpus; g++)
			if (shares_core(b->t, s, cfg->guest_cpus[g]))
				finding(b, false, cfg->cpus_line, "cpus: sidecore cpu %d is an SMT sibling of guest cpu %d "
					"(one physical core): the guest's thread steals the poll loop's cycles; put them on "
					"different cores", s, cfg->guest_cpus[g]);
		for (int j = i + 1; j < p->nsidecores; j++)
			if (shares_core(b->t, s, p->sidecores[j]))
				finding(b, false, cfg->cpus_line, "cpus: sidecore cpus %d and %d are SMT siblings (one "
					"physical core): two poll loops share one core's cycles; use one cpu per core",
					s, p->sidecores[j]);
	}
}

static void check_numa(struct build *b)
{
	const struct sc_plan *p = b->plan;
	const struct sc_config *cfg = b->cfg;

	for (int d = 0; d < cfg->nblk; d++) {
		const struct sc_blk_config *dev = &cfg->blk[d];
		int line = dev->sidecore_line ? dev->sidecore_line : dev->numa_line ? dev->numa_line : dev->line;
		if (p->dev_numa[d] < 0)
			continue;
		/* One line per sidecore, not per queue. */
		bool said[SC_CONFIG_MAX_CPUS] = { 0 };
		for (unsigned q = 0; q < dev->queues && q < SC_CONFIG_MAX_DEVICE_CPUS; q++) {
			int s = p->queue_sidecore[d][q];
			int node = numa_of(b->t, p->sidecores[s]);
			if (said[s] || node == p->dev_numa[d])
				continue;
			said[s] = true;
			finding(b, false, line, "[blk.%s] sidecore: cpu %d is on NUMA node %d, the disk on node %d: every "
				"request crosses nodes; choose a sidecore on node %d", dev->name, p->sidecores[s], node,
				p->dev_numa[d], p->dev_numa[d]);
		}
	}
}

static void check_isolation(struct build *b)
{
	static const char *const param[] = { "isolcpus", "nohz_full", "rcu_nocbs" };
	const struct sc_plan *p = b->plan;
	bool missing[3] = { 0 };
	char all[256], lacks[64] = "", add[3 * 300] = "";

	for (int i = 0; i < p->nsidecores; i++) {
		const struct sc_cpu_info *c = sc_topology_cpu(b->t, p->sidecores[i]);
		if (c) {
			missing[0] |= !c->isolated;
			missing[1] |= !c->nohz_full;
			missing[2] |= !c->rcu_nocbs;
		}
	}
	/* The whole sidecore list as each value: a parameter given twice keeps only the last. */
	list_of(p->sidecores, p->nsidecores, all, sizeof(all));
	for (int k = 0; k < 3; k++) {
		if (!missing[k])
			continue;
		size_t n = strlen(lacks), m = strlen(add);
		snprintf(lacks + n, sizeof(lacks) - n, "%s%s", n ? ", " : "", param[k]);
		snprintf(add + m, sizeof(add) - m, " %s=%s", param[k], all);
	}
	if (lacks[0])
		finding(b, false, b->cfg->cpus_line, "cpus: sidecore cpu%s %s %s not isolated (no %s): the scheduler, "
			"timer ticks and RCU callbacks interrupt the poll loop; add%s to the kernel command line",
			p->nsidecores == 1 ? "" : "s", all, p->nsidecores == 1 ? "is" : "are", lacks, add);
}

static void check_budget(struct build *b)
{
	const struct sc_plan *p = b->plan;
	const struct sc_config *cfg = b->cfg;

	for (int i = 0; i < p->nsidecores; i++) {
		unsigned long round = (unsigned long)p->load[i] * cfg->budget;
		if (p->load[i] > SC_POLLER_MAX_QUEUES)
			finding(b, true, cfg->cpus_line, "cpus: sidecore cpu %d would serve %u queues, more than the %d one "
				"sidecore holds; add sidecores", p->sidecores[i], p->load[i], SC_POLLER_MAX_QUEUES);
		else if (round > SC_PLAN_ROUND_MAX)
			finding(b, false, cfg->cpus_line, "cpus: sidecore cpu %d serves %u queues × budget %u = %lu requests "
				"a round, more than %d: a queue waits for all the others' bursts; add sidecores or lower budget",
				p->sidecores[i], p->load[i], cfg->budget, round, SC_PLAN_ROUND_MAX);
		else if (!p->load[i] && cfg->nblk)
			finding(b, false, cfg->cpus_line, "cpus: sidecore cpu %d serves no queue (every device names other "
				"sidecores); drop it or give it a device", p->sidecores[i]);
	}
}

/* io-wq: io_uring's workers (for I/O that cannot complete at once) run here, not on a sidecore. */
static void plan_iowq(struct build *b, bool local)
{
	struct sc_plan *p = b->plan;
	const struct sc_config *cfg = b->cfg;
	char list[256];

	if (cfg->iowq == SC_IOWQ_NONE)
		return;
	if (cfg->iowq == SC_IOWQ_LIST) {
		if (check_exist(b, cfg->iowq_cpus, cfg->niowq_cpus, "iowq_cpus", cfg->iowq_line, local))
			return;
		for (int i = 0; i < cfg->niowq_cpus; i++) {
			if (cfg->iowq_cpus[i] < SC_MAX_CPUS)   /* cpus past the mask exist only on machines beyond SC_MAX_CPUS */
				p->iowq[cfg->iowq_cpus[i]] = true;
			if (sidecore_index(p, cfg->iowq_cpus[i]) >= 0)
				finding(b, false, cfg->iowq_line, "iowq_cpus: cpu %d is a sidecore: an io_uring worker there "
					"preempts the poll loop; leave the sidecores out", cfg->iowq_cpus[i]);
		}
		p->iowq_set = true;
		return;
	}
	/* auto: neither sidecores nor guests; failing that, anything but the sidecores. */
	for (int pass = 0; pass < 2 && !p->iowq_set; pass++) {
		for (int i = 0; i < b->t->ncpus; i++) {
			const struct sc_cpu_info *c = &b->t->cpus[i];
			if ((local && !c->allowed) || sidecore_index(p, c->cpu) >= 0 || c->cpu >= SC_MAX_CPUS ||
			    (pass == 0 && in(cfg->guest_cpus, cfg->nguest_cpus, c->cpu)))
				continue;
			p->iowq[c->cpu] = true;
			p->iowq_set = true;
		}
	}
	if (!p->iowq_set)
		finding(b, false, cfg->iowq_line ? cfg->iowq_line : cfg->cpus_line, "iowq_cpus: every cpu is a sidecore "
			"(%s), so io_uring's workers preempt the poll loops; leave a cpu for the host",
			list_of(p->sidecores, p->nsidecores, list, sizeof(list)));
}

int sc_plan_backing_numa(const char *path)
{
	struct stat st;
	char sys[128], real[PATH_MAX], node[PATH_MAX + 32];

	if (stat(path, &st) < 0)
		return -1;
	dev_t dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	if (!realpath(sys, real))
		return -1;
	/* The disk's device/numa_node; a partition's is its parent's. */
	for (int up = 0; up < 2; up++) {
		snprintf(node, sizeof(node), "%s/device/numa_node", real);
		FILE *f = fopen(node, "r");
		if (f) {
			int n = -1;
			if (fscanf(f, "%d", &n) != 1)
				n = -1;
			fclose(f);
			return n;
		}
		char *slash = strrchr(real, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	return -1;
}

int sc_plan_build(struct sc_plan *plan, const struct sc_config *cfg, const struct sc_topology *t, bool local,
		  FILE *out)
{
	struct build b = { .plan = plan, .cfg = cfg, .t = t, .out = out };

	memset(plan, 0, sizeof(*plan));
	plan->idle_spin_ns = cfg->idle == SC_IDLE_SPIN ? SC_POLLER_NEVER_SLEEP
			     : cfg->idle == SC_IDLE_SLEEP ? 0 : cfg->idle_spin_ns;
	for (int d = 0; d < cfg->nblk; d++)
		plan->dev_numa[d] = cfg->blk[d].numa_node >= 0 ? cfg->blk[d].numa_node
				    : local ? sc_plan_backing_numa(cfg->blk[d].backing) : -1;

	/* Guest cpus are the VMM's: sidecored's own mask may well leave them out (systemd CPUAffinity=). */
	check_exist(&b, cfg->guest_cpus, cfg->nguest_cpus, "guest_cpus", cfg->guest_cpus_line, false);
	if (cfg->cpus_auto) {
		choose_auto(&b, local);
	} else {
		check_exist(&b, cfg->cpus, cfg->ncpus, "cpus", cfg->cpus_line, local);
		for (int i = 0; i < cfg->ncpus; i++) {
			if (in(cfg->guest_cpus, cfg->nguest_cpus, cfg->cpus[i]))
				finding(&b, true, cfg->cpus_line, "cpus: cpu %d is also a guest cpu (guest_cpus, line %d); "
					"a cpu is one or the other", cfg->cpus[i], cfg->guest_cpus_line);
			plan->sidecores[plan->nsidecores++] = cfg->cpus[i];
		}
	}
	if (plan->errors)
		return -EINVAL;
	place_queues(&b);
	check_smt(&b);
	check_numa(&b);
	check_isolation(&b);
	check_budget(&b);
	plan_iowq(&b, local);
	return plan->errors ? -EINVAL : 0;
}

void sc_plan_print(const struct sc_plan *plan, const struct sc_config *cfg, const struct sc_topology *t, FILE *out)
{
	char sib[64], list[256];
	int iowq[SC_MAX_CPUS], niowq = 0;

	fprintf(out, "%-5s %-9s %-7s %-4s %-5s %-12s %-5s %s\n", "cpu", "role", "package", "node", "core",
		"smt sibling", "io-wq", "queues");
	for (int i = 0; i < t->ncpus; i++) {
		const struct sc_cpu_info *c = &t->cpus[i];
		int s = sidecore_index(plan, c->cpu);
		bool guest = in(cfg->guest_cpus, cfg->nguest_cpus, c->cpu);
		bool wq = plan->iowq_set && c->cpu < SC_MAX_CPUS && plan->iowq[c->cpu];

		if (wq)
			iowq[niowq++] = c->cpu;
		sc_topology_siblings(t, c->cpu, sib, sizeof(sib));
		fprintf(out, "%-5d %-9s %-7d %-4d %-5d %-12s %-5s", c->cpu, s >= 0 ? "sidecore" : guest ? "guest" : "host",
			c->package, c->numa, c->core, sib[0] ? sib : "-", wq ? "yes" : "-");
		if (s < 0) {
			fputs(" -\n", out);
			continue;
		}
		int shown = 0;
		for (int d = 0; d < cfg->nblk; d++)
			for (unsigned q = 0; q < cfg->blk[d].queues && q < SC_CONFIG_MAX_DEVICE_CPUS; q++)
				if (plan->queue_sidecore[d][q] == s)
					fprintf(out, "%s%s:%u", shown++ ? "," : " ", cfg->blk[d].name, q);
		fputs(shown ? "\n" : " none\n", out);
	}
	if (cfg->idle == SC_IDLE_ADAPTIVE)
		fprintf(out, "idle: adaptive (spin %llu us, then re-arm notifications and sleep)\n",
			(unsigned long long)(cfg->idle_spin_ns / 1000));
	else
		fprintf(out, "idle: %s\n", cfg->idle == SC_IDLE_SPIN ? "spin (never sleep)" : "sleep (as soon as idle)");
	fprintf(out, "io-wq: %s\n", plan->iowq_set ? list_of(iowq, niowq, list, sizeof(list)) : "anywhere (not set)");
	fprintf(out, "stats: %s\n", cfg->stats_socket[0] ? cfg->stats_socket : "off");
}
