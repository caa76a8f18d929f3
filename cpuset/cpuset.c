/* SPDX-License-Identifier: MIT */
#include "cpuset/cpuset.h"

#include <ctype.h>
#include <errno.h>
#include <hwloc.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cpuset/cpulist.h"

int sc_cpulist_parse(const char *s, bool *set, int nset)
{
	/* Digits only: strtol alone would also take spaces and signs. */
	while (*s && *s != '\n') {
		char *end;
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		long a = strtol(s, &end, 10), b = a;
		s = end;
		if (*s == '-') {
			if (!isdigit((unsigned char)s[1]))
				return -EINVAL;
			b = strtol(s + 1, &end, 10);
			if (b < a)
				return -EINVAL;
			s = end;
		}
		/* An absurd number (strtol clamps to LONG_MAX) only lands past the array. */
		for (long c = a; c <= b && c < nset; c++)
			set[c] = true;
		if (*s == ',' && isdigit((unsigned char)s[1]))
			s++;
		else if (*s && *s != '\n')
			return -EINVAL;
	}
	return 0;
}

/* Larger than any kernel's NR_CPUS (8192): bounds the masks we allocate. */
#define CPUSET_MAX_CPU 65536

/*
 * The calling thread's affinity mask, sized to fit the kernel's: the
 * fixed cpu_set_t holds 1024 cpus and sched_getaffinity fails with EINVAL
 * on a mask smaller than the kernel's. NULL on failure; CPU_FREE it.
 */
static cpu_set_t *get_affinity(size_t *size)
{
	for (int n = 1024; n <= CPUSET_MAX_CPU; n *= 2) {
		cpu_set_t *set = CPU_ALLOC(n);
		if (!set)
			return NULL;
		*size = CPU_ALLOC_SIZE(n);
		if (sched_getaffinity(0, *size, set) == 0)
			return set;
		CPU_FREE(set);
		if (errno != EINVAL)
			return NULL;
	}
	return NULL;
}

/*
 * Read a sysfs cpu list; a missing or empty file means "none" (nohz_full
 * exists only on kernels built with it). A malformed list keeps what parsed:
 * these flags only steer a preference.
 */
static void read_cpulist(const char *path, bool *set, int nset)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	if (getline(&line, &cap, f) > 0)
		sc_cpulist_parse(line, set, nset);
	free(line);
	fclose(f);
}

/* The value of the kernel parameter key= in cmdline ("" for a bare key=), or NULL; cut at the next space. */
static const char *cmdline_value(const char *cmdline, const char *key, char *buf, size_t len)
{
	size_t n = strlen(key);
	for (const char *s = cmdline; (s = strstr(s, key)) != NULL; s += n) {
		if ((s != cmdline && s[-1] != ' ') || s[n] != '=')
			continue;
		s += n + 1;
		snprintf(buf, len, "%.*s", (int)strcspn(s, " \n"), s);
		return buf;
	}
	return NULL;
}

void sc_cmdline_isolation(const char *cmdline, bool *isolcpus, bool *nohz_full, bool *rcu_nocbs, int n)
{
	static const char *const keys[] = { "isolcpus", "nohz_full", "rcu_nocbs" };
	bool *sets[] = { isolcpus, nohz_full, rcu_nocbs };
	char buf[512];

	for (int k = 0; k < 3; k++) {
		const char *v = cmdline_value(cmdline, keys[k], buf, sizeof(buf));
		if (!v)
			continue;
		/* isolcpus= may start with flags ("nohz,domain,managed_irq,"): skip words. */
		while (isalpha((unsigned char)*v) && strcmp(v, "all") && strchr(v, ','))
			v = strchr(v, ',') + 1;
		if (!*v || !strcmp(v, "all")) {
			/* An empty rcu_nocbs= offloads every cpu (Linux 5.18+). */
			if (k == 2 || *v)
				for (int c = 0; c < n; c++)
					sets[k][c] = true;
			continue;
		}
		sc_cpulist_parse(v, sets[k], n);
	}
}

/* This machine's isolation: sysfs (what the kernel did) and the command line (rcu_nocbs has no sysfs file). */
static void machine_isolation(bool *isolated, bool *nohz, bool *rcu, int n)
{
	char *line = NULL;
	size_t cap = 0;
	FILE *f;

	read_cpulist("/sys/devices/system/cpu/isolated", isolated, n);
	read_cpulist("/sys/devices/system/cpu/nohz_full", nohz, n);
	f = fopen("/proc/cmdline", "r");
	if (f) {
		if (getline(&line, &cap, f) > 0)
			sc_cmdline_isolation(line, isolated, nohz, rcu, n);
		free(line);
		fclose(f);
	}
}

int sc_topology_load(struct sc_topology *t)
{
	return sc_topology_load_from(t, NULL);
}

int sc_topology_load_from(struct sc_topology *t, const char *source)
{
	bool isolated[SC_MAX_CPUS] = { 0 }, nohz[SC_MAX_CPUS] = { 0 }, rcu[SC_MAX_CPUS] = { 0 };
	bool online[SC_MAX_CPUS] = { 0 };
	hwloc_topology_t topo;
	size_t affsz = 0;
	cpu_set_t *aff = NULL;
	int ret = 0;

	memset(t, 0, sizeof(*t));
	if (!source) {
		machine_isolation(isolated, nohz, rcu, SC_MAX_CPUS);
		/* Offline: known to the kernel (possible) and not online; hwloc lists online cpus only. */
		read_cpulist("/sys/devices/system/cpu/possible", t->offline, SC_MAX_CPUS);
		read_cpulist("/sys/devices/system/cpu/online", online, SC_MAX_CPUS);
		for (int c = 0; c < SC_MAX_CPUS; c++)
			t->offline[c] = t->offline[c] && !online[c];
		/*
		 * "Allowed" is our affinity mask, so taskset and cgroups both narrow
		 * what the plan picks from. It is the calling thread's mask: callers
		 * load the topology before they pin anything.
		 */
		errno = 0;
		aff = get_affinity(&affsz);
		if (!aff)
			return errno ? -errno : -ENOMEM;
	}
	if (hwloc_topology_init(&topo) < 0) {
		CPU_FREE(aff);
		return -ENOMEM;
	}
	if (source) {
		/* A file is an XML export; anything else must be a synthetic description. */
		if (access(source, R_OK) == 0 ? hwloc_topology_set_xml(topo, source) < 0
					      : hwloc_topology_set_synthetic(topo, source) < 0) {
			ret = -EINVAL;
			goto out;
		}
	}
	/* Whole machine, not just our cgroup: cpus we may not use are listed as such. */
	hwloc_topology_set_flags(topo, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
	if (hwloc_topology_load(topo) < 0) {
		ret = source ? -EINVAL : -EIO;
		goto out;
	}
	int nnodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	int npu = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	t->ncores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
	t->npackages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
	t->nnumas = nnodes;
	if (t->nnumas < 1)
		t->nnumas = 1;
	if (t->npackages < 1)
		t->npackages = 1;
	for (int i = 0; i < npu && t->ncpus < SC_MAX_CPUS; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, pu);
		hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, pu);
		int cpu = (int)pu->os_index;
		struct sc_cpu_info *c = &t->cpus[t->ncpus++];

		c->cpu = cpu;
		c->core = core ? (int)core->logical_index : cpu;
		c->package = pkg ? (int)pkg->logical_index : 0;
		c->numa = 0;
		for (int n = 0; n < nnodes; n++) {
			hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)n);
			if (hwloc_bitmap_isset(node->cpuset, (unsigned)cpu))
				c->numa = (int)node->os_index;
		}
		c->allowed = source ? true : CPU_ISSET_S((size_t)cpu, affsz, aff);
		if (cpu < SC_MAX_CPUS) {
			c->isolated = isolated[cpu];
			c->nohz_full = nohz[cpu];
			c->rcu_nocbs = rcu[cpu];
			t->offline[cpu] = false;
		}
	}
	/* A topology without cores (some hypervisors): each cpu is its own core. */
	if (t->ncores < 1)
		t->ncores = t->ncpus;
	if (!t->ncpus)
		ret = -ENODEV;
out:
	hwloc_topology_destroy(topo);
	CPU_FREE(aff);
	return ret;
}

const struct sc_cpu_info *sc_topology_cpu(const struct sc_topology *t, int cpu)
{
	for (int i = 0; i < t->ncpus; i++)
		if (t->cpus[i].cpu == cpu)
			return &t->cpus[i];
	return NULL;
}

void sc_topology_siblings(const struct sc_topology *t, int cpu, char *buf, size_t len)
{
	const struct sc_cpu_info *me = sc_topology_cpu(t, cpu);
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (int i = 0; me && i < t->ncpus && used < len; i++) {
		const struct sc_cpu_info *o = &t->cpus[i];
		if (o->cpu == cpu || o->core != me->core)
			continue;
		int k = snprintf(buf + used, len - used, "%s%d", used ? "," : "", o->cpu);
		if (k < 0)
			break;
		used += (size_t)k;
	}
}

/*
 * Pair preferences, strongest first; each weight outranks the sum of all
 * below it. Different physical cores: SMT siblings share the core's
 * pipeline and caches, so a spinning sidecore slows its sibling. Isolated
 * (isolcpus): the operator set those cpus aside for this kind of work, and
 * the scheduler leaves them alone. Same NUMA node: the ring's cache lines
 * move between the two cpus on every request. nohz_full: no tick jitter.
 * The sidecore's own quiet matters more than the guest cpu's.
 */
enum {
	W_OTHER_CORE = 1000,
	W_SIDECORE_ISOLATED = 200,
	W_GUEST_ISOLATED = 100,
	W_SAME_NUMA = 10,
	W_SIDECORE_NOHZ = 2,
	W_GUEST_NOHZ = 1,
};

int sc_cpuset_pick_pair(const struct sc_topology *t, int *sidecore, int *guest)
{
	int best = -1, best_s = -1, best_g = -1;

	for (int i = 0; i < t->ncpus; i++) {
		const struct sc_cpu_info *s = &t->cpus[i];
		if (!s->allowed)
			continue;
		for (int j = 0; j < t->ncpus; j++) {
			const struct sc_cpu_info *g = &t->cpus[j];
			if (i == j || !g->allowed)
				continue;
			int score = (s->core != g->core ? W_OTHER_CORE : 0) +
				    (s->isolated ? W_SIDECORE_ISOLATED : 0) +
				    (g->isolated ? W_GUEST_ISOLATED : 0) +
				    (s->numa == g->numa ? W_SAME_NUMA : 0) +
				    (s->nohz_full ? W_SIDECORE_NOHZ : 0) +
				    (g->nohz_full ? W_GUEST_NOHZ : 0);
			/*
			 * On a tie the sidecore takes the higher-numbered cpu
			 * (cpu 0 does most of the housekeeping) and the guest
			 * the first one listed, so the choice is stable.
			 */
			if (score > best || (score == best && s->cpu > best_s)) {
				best = score;
				best_s = s->cpu;
				best_g = g->cpu;
			}
		}
	}
	if (best < 0)
		return -ENODEV;
	*sidecore = best_s;
	*guest = best_g;
	return 0;
}

int sc_cpu_pin_self(int cpu)
{
	/*
	 * "May run on" is the kernel's answer (cgroup cpuset, online cpus;
	 * EINVAL otherwise), not this thread's current mask: a thread pinned
	 * once, or created by a pinned thread, must be able to move.
	 */
	if (cpu < 0 || cpu >= CPUSET_MAX_CPU)
		return -EINVAL;
	size_t sz = CPU_ALLOC_SIZE(cpu + 1);
	cpu_set_t *set = CPU_ALLOC(cpu + 1);
	if (!set)
		return -ENOMEM;
	CPU_ZERO_S(sz, set);
	CPU_SET_S((size_t)cpu, sz, set);
	int ret = pthread_setaffinity_np(pthread_self(), sz, set);
	CPU_FREE(set);
	return -ret;
}

void *sc_numa_alloc_on_cpu(int cpu, size_t size)
{
	if (numa_available() >= 0 && cpu >= 0) {
		int node = numa_node_of_cpu(cpu);
		void *p = node >= 0 ? numa_alloc_onnode(size, node) : NULL;
		if (p)
			return p;
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void sc_numa_free(void *p, size_t size)
{
	/* numa_free is munmap (libnuma maps whole pages), so one call frees either kind. */
	if (p)
		munmap(p, size);
}

/* Is word one of the space-separated tokens of list? */
static bool has_token(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *s = list; (s = strstr(s, word)) != NULL; s += n)
		if ((s == list || s[-1] == ' ' || s[-1] == '\t') && (s[n] == 0 || s[n] == ' ' || s[n] == '\n'))
			return true;
	return false;
}

static const char *plural(int n)
{
	return n == 1 ? "" : "s";
}

int sc_machine_describe(char *buf, size_t len)
{
	char model[128] = "unknown cpu";
	char *line = NULL;
	size_t cap = 0;
	bool guest = false, have_model = false;
	FILE *f = fopen("/proc/cpuinfo", "r");
	struct sc_topology *t;
	int n;

	if (!buf || !len)
		return -EINVAL;
	if (f) {
		/* getline: the flags line is longer than any fixed buffer we would pick. */
		while (getline(&line, &cap, f) > 0) {
			char *v = strchr(line, ':');
			if (!v)
				continue;
			v++;
			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = 0;
			if (!have_model && !strncmp(line, "model name", 10)) {
				snprintf(model, sizeof(model), "%s", v);
				have_model = true;
			} else if (!strncmp(line, "flags", 5) && has_token(v, "hypervisor")) {
				/* CPUID.1:ECX[31], which hypervisors set for their guests. */
				guest = true;
			}
		}
		free(line);
		fclose(f);
	}
	t = calloc(1, sizeof(*t));
	if (!t || sc_topology_load(t) < 0) {
		free(t);
		n = snprintf(buf, len, "%s%s", model, guest ? ", running as a VM guest" : "");
		return n < 0 ? -EIO : n;
	}
	n = snprintf(buf, len, "%s, %d cpu%s, %d core%s, %d numa node%s%s", model,
		     t->ncpus, plural(t->ncpus), t->ncores, plural(t->ncores),
		     t->nnumas, plural(t->nnumas), guest ? ", running as a VM guest" : "");
	free(t);
	return n < 0 ? -EIO : n;
}
