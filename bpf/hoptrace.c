// SPDX-License-Identifier: GPL-2.0
/* hoptrace kernel side: passive TC hooks that report every packet they see
 * (struct hop_event) and a kfree_skb tracepoint that reports drops of packets
 * a hook saw recently (struct drop_event). Both go to one ring buffer,
 * submitted without wakeup: user space drains it on a short timer, which
 * keeps the per-event cost in the hundreds of nanoseconds. */

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "kernel.h"

char LICENSE[] SEC("license") = "GPL";

/* enum tcx_action_base is missing from older uapi headers. */
#ifndef TCX_NEXT
#define TCX_NEXT -1
#endif
/* Both mean "not my business, go on": a passive hook must return one of them,
 * never TC_ACT_OK, which would end the chain for programs after ours. */
_Static_assert(TCX_NEXT == TC_ACT_UNSPEC, "TCX_NEXT and TC_ACT_UNSPEC differ");

/* Settings, fixed by user space before load. The verifier sees them as
 * constants and removes the code they switch off. */
const volatile __u32 snaplen = 0;          /* packet bytes copied per hop, <= MAX_SNAPLEN */
const volatile bool have_kern_ctx = false; /* bpf_cast_to_kern_ctx works (kernel >= 6.3) */
const volatile __u32 attach_netns_ino = 0; /* netns of the attach point when !have_kern_ctx */
const volatile bool count_hook_calls = false; /* tests: count every hook invocation */
const volatile __u64 join_window_ns = 1000000000ULL; /* hops further apart are different packets */
/* serve: aggregate in the kernel (hop_hist, path_hist, drop_counts) instead
 * of sending events. Off, the aggregation is dead code. */
const volatile bool aggregate_only = false;
/* serve: the latency histograms time every new packet while a CPU sees at
 * most timed_per_sec a second (in bursts of up to timed_burst); beyond
 * that, one in time_one_in, counted time_one_in times, so the buckets still
 * estimate every packet. timed_per_sec 0: time every packet. */
const volatile __u64 timed_per_sec = 0;
const volatile __u32 timed_burst = 1;
const volatile __u32 time_one_in = 1;

/* IP protocol numbers (linux/in.h drags in libc headers). */
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58

#define MAX_SNAPLEN 1536
#define MAX_HOOKS 8
#define FILTER_MAX_CLAUSES 16 /* filter.MaxClauses */
#define FILTER_MAX_PREDS 8    /* filter.MaxPreds */
#define HIST_BOUNDS 19        /* tracer.HistBounds */
#define HIST_BUCKETS (HIST_BOUNDS + 1)
#define AGG_ENTRIES 4096

enum event_kind {
	EVENT_HOP = 1,
	EVENT_DROP = 2,
	EVENT_HOP_NEXT = 3,
};

/* Layer bits, equal to event.Layer in Go. */
enum layer {
	L_ETH = 1 << 0,
	L_VLAN = 1 << 1,
	L_ARP = 1 << 2,
	L_IPV4 = 1 << 3,
	L_IPV6 = 1 << 4,
	L_TCP = 1 << 5,
	L_UDP = 1 << 6,
	L_ICMP = 1 << 7,
	L_ICMPV6 = 1 << 8,
	L_FRAG = 1 << 9,
};

/* Decoded header summary, numbers in host byte order. */
struct pkt {
	__u16 layers;
	__u16 ethertype;
	__u16 vlan;
	__u8 proto;
	__u8 ttl;
	__u8 src_mac[6];
	__u8 dst_mac[6];
	__u8 src[16]; /* IPv4 in the first 4 bytes; ARP sender address */
	__u8 dst[16]; /* ARP target address */
	__u32 ip_id;  /* IPv4 ID or IPv6 flow label */
	__u16 l3_len; /* IPv4 total length or IPv6 payload length */
	__u16 l4_extra; /* TCP window or UDP length */
	__u16 sport;
	__u16 dport;
	__u32 seq;
	__u32 ack;
	__u16 arp_op;
	__u8 tcp_flags;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 _pad0;
	__u16 icmp_id;
	__u16 icmp_seq;
	__u8 arp_sha[6];
	__u8 arp_tha[6];
	/* Fragments (L_FRAG): the offset field with its more-fragments bit
	 * (IPv4: flags & 0x3fff, IPv6: offset << 3 | M) and, for IPv6, the
	 * fragment header's identification. Only for the fingerprint. */
	__u16 frag_off;
	__u32 frag_id;
};

struct hop_event {
	__u8 kind; /* EVENT_HOP */
	__u8 dir;  /* 0 ingress, 1 egress */
	__u16 cap_len; /* valid bytes of the snaplen bytes after the struct */
	__u32 ifindex;
	__u32 netns_ino;
	__u32 len;
	__u16 gso_segs;
	__u16 gso_size;
	__u32 tunnel; /* at an underlay hook: TUNNEL_VXLAN, TUNNEL_PEER_V6, the VNI */
	__u64 ts;
	__u64 skb;   /* kernel sk_buff address, 0 without kern ctx */
	__u64 id;    /* packet id: equal for the hops of one packet */
	__u64 fp;    /* content fingerprint */
	__u8 tunnel_peer[16]; /* the other node's address (IPv4 in the first 4 bytes) */
	struct pkt pkt; /* at an underlay hook: the inner packet */
	/* snaplen packet bytes follow when snaplen > 0 (from the outer headers) */
};

/* A hop of a packet whose headers are byte for byte those of its previous
 * hop (the reader has them from that hop's event): 48 bytes where a
 * hop_event takes 172. An event's bytes are most of what it costs: each
 * line the hook writes was last read by the reader on another CPU
 * (BenchmarkHookCostPingPong: ~450 ns a hook with every hop a hop_event,
 * ~270 with every hop this size). With snaplen, only while it is at most
 * SNAP_HASHED and the hop's bytes are those of the last hop too (snap_hash):
 * the reader gives it the bytes as it gives it the headers. Never at an
 * underlay hook (the outer headers are the news) or without the skb key
 * (see hop). */
struct hop_next_event {
	__u8 kind; /* EVENT_HOP_NEXT */
	__u8 dir;
	__u16 _pad0;
	__u32 ifindex;
	__u32 netns_ino;
	__u32 len;
	__u16 gso_segs;
	__u16 gso_size;
	__u32 _pad1;
	__u64 ts; /* where hop_event has it: the reader finds the time of both alike */
	__u64 skb;
	__u64 id;
};
_Static_assert(__builtin_offsetof(struct hop_next_event, ts) == __builtin_offsetof(struct hop_event, ts),
	       "hop_next_event.ts is not where hop_event has it");

/* hop_event.tunnel bits: the packet is VXLAN-encapsulated (RFC 7348), the
 * peer address is IPv6, and the 24-bit VNI. */
enum tunnel_bits {
	TUNNEL_VXLAN = 1U << 31,
	TUNNEL_PEER_V6 = 1U << 30,
	TUNNEL_VNI_MASK = 0xffffff,
};

struct drop_event {
	__u8 kind; /* EVENT_DROP */
	__u8 _pad0[3];
	__u32 reason;
	__u32 ifindex;
	__u32 netns_ino;
	__u64 ts;
	__u64 skb;
	__u64 id;
	__u64 fp;
	__u64 location;
	struct pkt pkt;
};

/* What a filter predicate looks at; equal to filter.Field in Go. */
enum filter_field {
	F_SRC_ADDR = 1,
	F_DST_ADDR = 2,
	F_ANY_ADDR = 3,
	F_SRC_PORT = 4,
	F_DST_PORT = 5,
	F_ANY_PORT = 6,
	F_PROTO = 7,
	F_ETHERTYPE = 8,
};

/* One comparison of a compiled filter (tracer/filter): it holds when the
 * packet has one of the layers (0: any) and the field is in [lo, hi], or for
 * addresses (addr & mask) == val, compared as 32-bit words in memory order;
 * negate inverts the result. */
struct filter_pred {
	__u8 field;
	__u8 negate;
	__u16 layers;
	__u16 lo;
	__u16 hi;
	__u32 val[4];
	__u32 mask[4];
};

/* The filter, in disjunctive normal form: the packet matches when all
 * predicates of any of the first filter_nclauses clauses hold. Unused
 * clauses and predicates are dead code to the verifier. */
const volatile bool filter_on = false;
const volatile __u32 filter_nclauses = 0;
const volatile __u8 filter_clause_len[FILTER_MAX_CLAUSES] = {};
const volatile struct filter_pred filter_preds[FILTER_MAX_CLAUSES][FILTER_MAX_PREDS] = {};

/* A hook, for the aggregates: an interface and a direction. */
struct hook_id {
	__u32 netns_ino;
	__u32 ifindex_dir; /* ifindex << 1 | dir (0 ingress, 1 egress) */
};

/* Where a packet has been: the entry joining a packet's hops and drop. Only
 * packets the filter matched have one. */
struct seen {
	__u64 id;
	__u64 fp;
	__u64 ts;     /* of the last hop */
	__u32 src_h;  /* source address and port at the last hop, hashed */
	__u32 dst_h;  /* destination address and port at the last hop, hashed */
	__u32 nhooks;
	__u32 hooks[MAX_HOOKS];
	/* Kept only with aggregate_only: */
	struct hook_id first; /* the packet's first traced hook */
	struct hook_id last;  /* its latest */
	__u64 first_ts; /* timed: the clock at the first hook */
	__u64 fine_ts;  /* timed: the clock at the last hook */
	__u32 weight; /* timed: counted this many times in the histograms; 0 untimed */
	__u32 _pad;
	/* Events only: the headers at the last hop whose event was sent,
	 * hashed (hdr_hash), or with snaplen 1 when that event carried the
	 * packet's bytes; 0 when it was lost. */
	__u64 hdr_h;
	/* The frame's first bytes at the last hop, hashed (frame_hash); 0
	 * when they were not hashed. */
	__u64 frame_h;
};

/* A packet on this CPU: a slot of flights, direct-mapped by key. A packet's
 * hooks nearly always run on the CPU that sent it (a veth hands it to its
 * peer through this CPU's backlog; the bridge forwards at once), so its
 * entry lives here, with no lock and no hash table. Past its last traced
 * hook (ended) it stays for what may still follow at once: its drop by the
 * receiving stack, or a hook the host routes it to (bridge ingress ->
 * routing -> another egress). */
struct flight {
	__u64 key; /* 0: empty */
	__u32 ended;
	__u32 _pad;
	struct seen s;
};

/* What an interface's hooks mean for a packet's way, set by user space at
 * attach time (hook_flags). */
enum hook_flag {
	HOOK_END_INGRESS = 1 << 0, /* ingress is a packet's last traced hook */
	HOOK_END_EGRESS = 1 << 1,  /* egress is a packet's last traced hook */
	HOOK_AFTER_PEER = 1 << 2,  /* ingress of a veth whose peer is traced:
				    * every packet here passed the peer's egress */
	HOOK_MORE = 1 << 30,       /* hook_slots: another interface of this
				    * slot is in hook_more */
};

struct hook_key {
	__u32 netns_ino;
	__u32 ifindex;
};

/* A slot of hook_slots: the flags of the interface that has it. */
struct hook_slot {
	struct hook_key key;
	__u32 flags;
};

/* hook_slots is indexed by hook_slot_idx. 1024 slots of 16 bytes: small
 * enough for the kernel to kmalloc the array (up to 32 KiB with its header)
 * rather than vmalloc it, so that a hook's lookup does not also miss the
 * TLB for the page; 4096 cost ~5 ns more a hook on a ping-pong. */
#define HOOK_SLOTS 1024

/* Counters of lost_counters, per CPU. */
enum lost_idx {
	LOST_HOPS = 0,   /* hop events lost to a full ring buffer */
	LOST_DROPS = 1,  /* drop events lost to a full ring buffer */
	LOST_EVICTED = 2, /* packets whose entry went before their next hop */
	LOST_AGGREGATE = 3, /* aggregate_only: updates lost to a full map */
	LOST_MAX = 4,
};

/* Latency histogram of hop_hist and path_hist, per CPU: counts of values
 * up to hist_bounds_ns[i] (and one above them all), and their sum. */
struct hist {
	__u64 buckets[HIST_BUCKETS];
	__u64 sum_ns;
	__u64 packets; /* path_hist: every packet, timed or not */
};

/* A pair of hooks: consecutive ones (hop_hist) or a packet's first and last
 * (path_hist). */
struct hook_pair {
	struct hook_id from;
	struct hook_id to;
};

/* A drop: its reason, the device it was on when freed (dir 0) and the
 * last hook that saw the packet. */
struct drop_key {
	__u32 reason;
	struct hook_id at;
	struct hook_id last;
};

/* Upper bounds of the histogram buckets in ns, set by user space. */
const volatile __u64 hist_bounds_ns[HIST_BOUNDS] = {};

#define FLIGHT_SLOTS 1024 /* per CPU at most; user space may load fewer */
#define MAX_PROBE_CPUS 256 /* CPUs whose slots a lost packet is looked for in */

/* flights has flight_mask + 1 slots per CPU (a power of two), set by user
 * space with the map's size; nr_cpus is the number of possible CPUs. */
const volatile __u32 flight_mask = FLIGHT_SLOTS - 1;
const volatile __u32 nr_cpus = 1;

/* Events go to the rings of the CPU that produces them (user space sizes
 * the rings and merges them in time order). With one ring for all CPUs,
 * CPUs tracing at once contended for its lock and producer position: a hop
 * cost twice as much as on one CPU.
 *
 * Each CPU has two: a small ring (events[cpu]) that an event goes to first,
 * and a large one (spill[cpu]) for what the small one cannot hold until the
 * reader comes by (a flood). A ring's writes walk its whole size before
 * they come back to the same memory, so a large ring keeps evicting the
 * caches and the TLB; where packets are sparse that was most of what an
 * event cost (BenchmarkHookCostPingPong: 4 MiB rings 500-600 ns a hook,
 * 256 KiB ones under 300). The small ring stays cached. */
struct cpu_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* one per possible CPU, set by user space */
	__type(key, __u32);
	__array(values, struct cpu_ring);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* one per possible CPU, set by user space */
	__type(key, __u32);
	__array(values, struct cpu_ring);
} spill SEC(".maps");

/* reserve_ring takes size bytes in this CPU's small ring, else in its
 * large one, or returns NULL. */
static __always_inline void *reserve_ring(__u64 size)
{
	__u32 cpu = bpf_get_smp_processor_id();
	void *ring = bpf_map_lookup_elem(&events, &cpu);
	if (ring) {
		void *ev = bpf_ringbuf_reserve(ring, size, 0);
		if (ev)
			return ev;
	}
	ring = bpf_map_lookup_elem(&spill, &cpu);
	if (!ring)
		return NULL;
	return bpf_ringbuf_reserve(ring, size, 0);
}

/* The hooks' own ring, one per CPU, in front of the small one: a plain
 * ring in memory the reader maps (fast_ring's value), with the kernel ring
 * buffer's record format. A ring buffer's reservation and commit are a
 * spin lock with interrupts off and two locked instructions, and they made
 * half of what a traced hop cost (BenchmarkHookCostTraffic: ~320 ns a hook,
 * ~175 with the events written to a scratch buffer). Here a hook writes its
 * record and then the producer position: the reader (ring.go) reads up to
 * that position and writes its own, which the hook reads only when the
 * ring looks full. Only the TC hooks write it, which never run nested on a
 * CPU; the drop hook can interrupt them, so it keeps to the kernel rings. */
#define FAST_RING_BYTES (256 << 10) /* the most; fast_bytes is what is used */
#define RINGBUF_DISCARD_BIT (1U << 30)

struct fast_pos {
	__u64 prod;      /* the next record's position: written here */
	__u64 cons_seen; /* the reader's position as last read here */
	__u64 full_at;   /* the jiffy cons was last read and the ring full */
	__u64 _pad0[5];  /* cons on a line of its own */
	__u64 cons;      /* written by the reader */
	__u64 _pad1[7];
};

struct fast_data {
	__u8 b[FAST_RING_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* one per possible CPU, set by user space */
	__type(key, __u32);
	__type(value, struct fast_pos);
} fast_pos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1); /* one per possible CPU, set by user space */
	__type(key, __u32);
	__type(value, struct fast_data);
} fast_ring SEC(".maps");

/* fast_bytes is the ring's size (a power of two, at most FAST_RING_BYTES; 0:
 * no fast ring); fast_room the offset after which no record may start, so
 * that the largest fits before the end; ordered_stores is false where the
 * CPU may make stores visible out of order (not x86), and the producer
 * position is then written with a barrier. */
const volatile __u32 fast_bytes = 0;
const volatile __u32 fast_room = 0;
const volatile bool ordered_stores = true;

/* reader_asleep[0] is 1 while the reader sleeps until woken: it has found
 * the ring empty for a while and stopped looking every drain interval (an
 * idle tracer that wakes 100 times a second costs the host more than its
 * hooks do). Events are submitted without a wakeup otherwise: the reader
 * polls while busy, which batches them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} reader_asleep SEC(".maps");

/* out is where reserve put a record: in the fast ring (pos, and next the
 * producer position after it) or in a kernel ring (pos NULL). */
struct out {
	struct fast_pos *pos;
	__u64 next;
};

/* reserve_fast takes size bytes in this CPU's fast ring, or returns NULL
 * when it has no room. A record that would pass fast_room starts the ring
 * over, after a discarded record filling its end. */
static __always_inline void *reserve_fast(__u64 size, struct out *o)
{
	if (!fast_bytes || size > FAST_RING_BYTES)
		return NULL;
	__u32 cpu = bpf_get_smp_processor_id();
	struct fast_pos *fp = bpf_map_lookup_elem(&fast_pos, &cpu);
	struct fast_data *fd = bpf_map_lookup_elem(&fast_ring, &cpu);
	if (!fp || !fd)
		return NULL;
	__u64 prod = fp->prod;
	__u64 len = 8 + ((size + 7) & ~7ULL);
	__u64 off = prod & (fast_bytes - 8); /* prod is a multiple of 8 */
	__u64 skip = 0; /* the end of the ring, when the record starts it over */
	if (off > fast_room)
		skip = fast_bytes - off;
	asm volatile("" : "+r"(skip)); /* one register on every path, for the verifier */
	if (prod + skip + len - fp->cons_seen > fast_bytes) {
		/* Full as last seen. The reader's line is read again at most
		 * once a jiffy while it stays full: a reader that falls behind
		 * (trace -o json on a flood) would otherwise cost every hook a
		 * miss on the line it keeps writing. */
		__u64 j = bpf_jiffies64();
		if (fp->full_at == j)
			return NULL;
		fp->cons_seen = *(volatile __u64 *)&fp->cons;
		if (prod + skip + len - fp->cons_seen > fast_bytes) {
			fp->full_at = j;
			return NULL;
		}
	}
	if (skip) {
		*(__u32 *)(fd->b + off) = (__u32)(skip - 8) | RINGBUF_DISCARD_BIT;
		prod += skip;
	}
	/* Where the record goes, bounded again for the verifier: 6.1's
	 * cannot tell that off was compared with fast_room already (a dead
	 * branch left off with no possible value, and the pointer unknown). */
	__u64 at = prod & (fast_bytes - 8);
	asm volatile("" : "+r"(at));
	if (at > fast_room)
		return NULL;
	__u32 *hdr = (__u32 *)(fd->b + at);
	hdr[0] = (__u32)size;
	hdr[1] = 0;
	o->pos = fp;
	o->next = prod + len;
	return fd->b + at + 8;
}

/* reserve takes size bytes for a hook's event: in this CPU's fast ring,
 * else its small ring, else its large one; or returns NULL. */
static __always_inline void *reserve(__u64 size, struct out *o)
{
	o->pos = NULL;
	void *ev = reserve_fast(size, o);
	if (ev)
		return ev;
	return reserve_ring(size);
}

/* Loss counters, indexed by enum lost_idx. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

/* aggregate_only: latency between consecutive hooks of a packet. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, AGG_ENTRIES);
	__type(key, struct hook_pair);
	__type(value, struct hist);
} hop_hist SEC(".maps");

/* aggregate_only: latency from a packet's first to its last traced hook. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, AGG_ENTRIES);
	__type(key, struct hook_pair);
	__type(value, struct hist);
} path_hist SEC(".maps");

/* aggregate_only: the histograms most counted into, per CPU, in front of
 * hop_hist (the first HIST_CACHE_SLOTS) and path_hist (the rest). A slot is
 * direct-mapped by its key and kept by the first key counted into it; a key
 * whose slot another holds goes to the hash map. Finding a slot is an
 * array index and two compares, where a hash map lookup hashes the key and
 * walks a bucket in a helper call: a third of what serve's hooks cost.
 * User space adds a key's slots and its hash entry, and empties the slots
 * of keys whose hooks are gone. */
#define HIST_CACHE_SLOTS 256
struct hist_slot {
	struct hook_pair key; /* all zero: free */
	struct hist h;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * HIST_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct hist_slot);
} hist_cache SEC(".maps");

/* aggregate_only: drops of traced packets. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, AGG_ENTRIES);
	__type(key, struct drop_key);
	__type(value, __u64);
} drop_counts SEC(".maps");

/* aggregate_only: this CPU's clock for joins (coarse_now) and its budget of
 * packets to time (timed_weight). */
struct timing {
	__u64 jiffy;  /* the jiffy of ns */
	__u64 ns;     /* the clock at this CPU's first hook in that jiffy */
	__u64 credit; /* ns worth of timed_per_sec it may still time, times 1e9 */
	__u32 skip;   /* untimed since the last timed one past the budget */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct timing);
} timings SEC(".maps");

/* Hook invocations (0) and the hops of them continue_here joined (1),
 * counted only when count_hook_calls is set. */
#define HOOK_CALLS_CONTINUED 1
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} hook_calls SEC(".maps");

/* Per-CPU packet id counters; the CPU number goes in the top bits. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} id_counter SEC(".maps");

/* Packets in flight between traced hooks that left their CPU's slot: moved
 * out by another packet that wanted the slot while they were still on
 * their way. Keyed by skb address (or by fingerprint without kern ctx). An
 * entry goes at the packet's last traced hook or its drop; the LRU only
 * evicts what never got there. Each CPU has its own LRU lists (no lock
 * shared by all CPUs) over one table: a packet may continue or be dropped
 * on another CPU. User space sizes it for the host's CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct seen);
} seen_pkts SEC(".maps");

/* Packets on each CPU (struct flight). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FLIGHT_SLOTS);
	__type(key, __u32);
	__type(value, struct flight);
} flights SEC(".maps");

/* enum hook_flag bits of each attached interface: in its slot of
 * hook_slots (an array: a lookup is a few instructions), or in hook_more
 * when another interface has the slot. User space places them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HOOK_SLOTS);
	__type(key, __u32);
	__type(value, struct hook_slot);
} hook_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct hook_key);
	__type(value, __u32);
} hook_more SEC(".maps");

/* When a hook last traced a packet, in jiffies (bpf_jiffies64: a load,
 * where reading the clock costs tens of ns on a VM's clocksource). A
 * packet continues only within join_window_ns of its last hop, so when
 * nothing was traced for longer than that, no entry can continue: a packet
 * the filter rejects skips the packet table, and a freed skb the drop
 * program. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_traced SEC(".maps");

/* When this CPU last wrote last_traced, in ns (mark_traced). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} marked_at SEC(".maps");

/* join_window_ns plus a slack (CPUs race to write last_traced), in jiffies
 * of the fastest tick (HZ 1000): with a slower tick it spans more time,
 * which only keeps the lookups on longer. */
const volatile __u64 traced_window_jiffies = 1200;


/* seen_until[0]: a time (ns) after which no entry of seen_pkts can continue
 * a packet: every entry's last hop plus join_window_ns is before it. Entries
 * are rare (a packet moves there only when another wants its slot while it
 * is still on its way), and a lookup that finds nothing cost every new
 * packet's first hook, and every freed skb, a hashed search: until then
 * the hooks and the drop program skip it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen_until SEC(".maps");

/* One word per CPU to read a kernel pointer back as a number. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} scratch SEC(".maps");

/* UDP ports whose datagrams are VXLAN, a bit per port (word port / 32,
 * bit port % 32): the ports of the overlays whose underlay is traced
 * (Docker's default is 4789). User space sets them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536 / 32);
	__type(key, __u32);
	__type(value, __u32);
} tunnel_ports SEC(".maps");

/* Force the shared types into BTF for bpf2go -type. */
const struct hop_event *unused_hop __attribute__((unused));
const struct hop_next_event *unused_hop_next __attribute__((unused));
const struct drop_event *unused_drop __attribute__((unused));
const enum event_kind *unused_kind __attribute__((unused));
const enum layer *unused_layer __attribute__((unused));
const enum filter_field *unused_field __attribute__((unused));
const struct filter_pred *unused_pred __attribute__((unused));
const struct hook_key *unused_hook_key __attribute__((unused));
const struct hook_slot *unused_hook_slot __attribute__((unused));
const enum hook_flag *unused_hook_flag __attribute__((unused));
const enum lost_idx *unused_lost_idx __attribute__((unused));
const struct hist *unused_hist __attribute__((unused));
const struct hook_pair *unused_hook_pair __attribute__((unused));
const struct drop_key *unused_drop_key __attribute__((unused));
const struct flight *unused_flight __attribute__((unused));
const struct hist_slot *unused_hist_slot __attribute__((unused));
const enum tunnel_bits *unused_tunnel_bits __attribute__((unused));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym __weak;

/* ptr_bits returns a kernel pointer as a plain number the verifier lets
 * us compute with (it allows no arithmetic on a trusted pointer): stored
 * to a map and loaded back, it is a scalar. */
static __always_inline __u64 ptr_bits(const void *ptr)
{
	__u32 zero = 0;
	volatile __u64 *v = bpf_map_lookup_elem(&scratch, &zero);
	if (!v)
		return 0;
	*v = (__u64)ptr;
	return *v;
}

/* A source of packet bytes: the TC context, or kernel memory at drop time. */
struct src {
	struct __sk_buff *skb;
	const unsigned char *base;
};

/* MAX_DIRECT_OFF bounds the offsets read straight from the packet, so the
 * verifier can check them; headers further in go through the helper. */
#define MAX_DIRECT_OFF 255

/* HDR aligns a header copied out of the packet by load to 8 bytes, so
 * copy_words can store it a word at a time (the verifier wants stack
 * stores aligned). Its size stays that of the header. */
#define HDR __attribute__((aligned(8)))

/* copy_words copies len (a constant) bytes from the packet to dst (HDR) a
 * word at a time. A memcpy from the packet, whose alignment the compiler
 * cannot know, became a load, shift and or for every byte. The words are
 * unaligned, which x86 and arm64 load at full speed and the verifier there
 * allows. */
static __always_inline void copy_words(void *dst, const unsigned char *src, __u32 len)
{
	unsigned char *d = dst;
	__u32 i = 0;
#pragma unroll
	for (int k = 0; k < 8; k++) {
		if (i + 8 <= len) {
			*(__u64 *)(d + i) = *(const __u64 *)(src + i);
			i += 8;
		}
	}
	if (i + 4 <= len) {
		*(__u32 *)(d + i) = *(const __u32 *)(src + i);
		i += 4;
	}
	if (i + 2 <= len) {
		*(__u16 *)(d + i) = *(const __u16 *)(src + i);
		i += 2;
	}
	if (i < len)
		d[i] = src[i];
}

/* load copies len bytes at off to dst (HDR). In a TC hook, headers in the
 * linear part of the skb are read in place, which costs far less than the
 * helper call each header would otherwise take. */
static __always_inline int load(const struct src *s, __u32 off, void *dst, __u32 len)
{
	if (s->skb) {
		const unsigned char *data = (const unsigned char *)(long)s->skb->data;
		const unsigned char *end = (const unsigned char *)(long)s->skb->data_end;
		if (off <= MAX_DIRECT_OFF && data + off + len <= end) {
			copy_words(dst, data + off, len);
			return 0;
		}
		return bpf_skb_load_bytes(s->skb, off, dst, len);
	}
	return bpf_probe_read_kernel(dst, len, s->base + off);
}

/* submit_ring hands an event in a kernel ring to the reader, waking it
 * only if it sleeps. */
static __always_inline void submit_ring(void *ev)
{
	__u32 zero = 0;
	__u32 *asleep = bpf_map_lookup_elem(&reader_asleep, &zero);
	bpf_ringbuf_submit(ev, asleep && *asleep ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/* submit hands the event reserve gave to the reader. A record in the fast
 * ring is the reader's once the producer position passes it; a sleeping
 * reader is then woken through the small ring (an empty record). */
static __always_inline void submit(void *ev, const struct out *o)
{
	if (!o->pos) {
		submit_ring(ev);
		return;
	}
	asm volatile("" ::: "memory"); /* the record's stores before the position's */
	if (ordered_stores) {
		o->pos->prod = o->next;
	} else {
		__u64 d = o->next - o->pos->prod;
		__u64 old = __sync_fetch_and_add(&o->pos->prod, d); /* a full barrier */
		asm volatile("" : : "r"(old));
	}
	__u32 zero = 0;
	__u32 *asleep = bpf_map_lookup_elem(&reader_asleep, &zero);
	if (asleep && *asleep) {
		void *w = reserve_ring(8);
		if (w)
			bpf_ringbuf_discard(w, BPF_RB_FORCE_WAKEUP);
	}
}

static __always_inline void count(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);
	if (v)
		*v += 1;
}

struct l4hdr {
	__be16 sport;
	__be16 dport;
	__be32 seq;
	__be32 ack;
	__u8 doff;
	__u8 flags;
	__be16 window;
};

struct icmphdr_min {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be16 id;
	__be16 seq;
};

static __always_inline void parse_l4(const struct src *s, __u32 off, __u8 proto, struct pkt *p)
{
	switch (proto) {
	case IPPROTO_TCP: {
		struct l4hdr h HDR;
		if (load(s, off, &h, sizeof(h)))
			return;
		p->layers |= L_TCP;
		p->sport = bpf_ntohs(h.sport);
		p->dport = bpf_ntohs(h.dport);
		p->seq = bpf_ntohl(h.seq);
		p->ack = bpf_ntohl(h.ack);
		p->tcp_flags = h.flags;
		p->l4_extra = bpf_ntohs(h.window);
		return;
	}
	case IPPROTO_UDP: {
		__be16 h[4] HDR;
		if (load(s, off, h, sizeof(h)))
			return;
		p->layers |= L_UDP;
		p->sport = bpf_ntohs(h[0]);
		p->dport = bpf_ntohs(h[1]);
		p->l4_extra = bpf_ntohs(h[2]);
		return;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct icmphdr_min h HDR;
		if (load(s, off, &h, sizeof(h)))
			return;
		p->layers |= proto == IPPROTO_ICMP ? L_ICMP : L_ICMPV6;
		p->icmp_type = h.type;
		p->icmp_code = h.code;
		p->icmp_id = bpf_ntohs(h.id);
		p->icmp_seq = bpf_ntohs(h.seq);
		return;
	}
	}
}

struct ipv4hdr_min {
	__u8 ihl_ver;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 proto;
	__be16 csum;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ipv6hdr_min {
	__be32 vtc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct arphdr_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

static __always_inline void parse_l3(const struct src *s, __u32 off, __u16 ethertype, struct pkt *p)
{
	p->ethertype = ethertype;
	switch (ethertype) {
	case ETH_P_IP: {
		struct ipv4hdr_min h HDR;
		if (load(s, off, &h, sizeof(h)))
			return;
		p->layers |= L_IPV4;
		__builtin_memcpy(p->src, h.saddr, 4);
		__builtin_memcpy(p->dst, h.daddr, 4);
		p->proto = h.proto;
		p->ttl = h.ttl;
		p->ip_id = bpf_ntohs(h.id);
		p->l3_len = bpf_ntohs(h.tot_len);
		__u16 frag = bpf_ntohs(h.frag_off);
		if (frag & 0x3fff) { /* MF or a non-zero offset */
			p->layers |= L_FRAG;
			p->frag_off = frag & 0x3fff;
		}
		if (frag & 0x1fff) /* only the first fragment has the L4 header */
			return;
		parse_l4(s, off + (h.ihl_ver & 0xf) * 4, h.proto, p);
		return;
	}
	case ETH_P_IPV6: {
		struct ipv6hdr_min h HDR;
		if (load(s, off, &h, sizeof(h)))
			return;
		p->layers |= L_IPV6;
		__builtin_memcpy(p->src, h.saddr, 16);
		__builtin_memcpy(p->dst, h.daddr, 16);
		p->ttl = h.hop_limit;
		p->ip_id = bpf_ntohl(h.vtc_flow) & 0xfffff;
		p->l3_len = bpf_ntohs(h.payload_len);
		__u8 next = h.nexthdr;
		off += sizeof(h);
		/* Walk a few extension headers to reach L4. */
#pragma unroll
		for (int i = 0; i < 3; i++) {
			__u8 ext[2] HDR;
			if (next == 44) { /* fragment: fixed 8 bytes */
				struct {
					__u8 next;
					__u8 reserved;
					__be16 off_m;
					__be32 id;
				} fh HDR;
				if (load(s, off, &fh, sizeof(fh)))
					return;
				p->layers |= L_FRAG;
				p->frag_off = bpf_ntohs(fh.off_m);
				p->frag_id = bpf_ntohl(fh.id);
				next = fh.next;
				if (p->frag_off & 0xfff8)
					break; /* a later fragment: payload follows */
				off += 8;
				continue;
			}
			if (next != 0 && next != 43 && next != 60)
				break;
			if (load(s, off, ext, sizeof(ext)))
				return;
			next = ext[0];
			off += (ext[1] + 1) * 8;
		}
		p->proto = next;
		/* Only the first fragment (offset 0) has the L4 header; a later
		 * one holds payload bytes at off. */
		if (!(p->frag_off & 0xfff8))
			parse_l4(s, off, next, p);
		return;
	}
	case ETH_P_ARP: {
		struct arphdr_eth h HDR;
		if (load(s, off, &h, sizeof(h)))
			return;
		if (bpf_ntohs(h.ptype) != ETH_P_IP || h.hlen != 6 || h.plen != 4)
			return;
		p->layers |= L_ARP;
		p->arp_op = bpf_ntohs(h.op);
		__builtin_memcpy(p->arp_sha, h.sha, 6);
		__builtin_memcpy(p->arp_tha, h.tha, 6);
		__builtin_memcpy(p->src, h.spa, 4);
		__builtin_memcpy(p->dst, h.tpa, 4);
		return;
	}
	}
}

/* parse_l2 decodes from the Ethernet header at off. */
static __always_inline void parse_l2(const struct src *s, __u32 off, struct pkt *p)
{
	struct ethhdr eth HDR;
	if (load(s, off, &eth, sizeof(eth)))
		return;
	p->layers |= L_ETH;
	__builtin_memcpy(p->dst_mac, eth.h_dest, 6);
	__builtin_memcpy(p->src_mac, eth.h_source, 6);
	__u16 proto = bpf_ntohs(eth.h_proto);
	off += sizeof(eth);
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		__be16 tag[2] HDR;
		if (load(s, off, tag, sizeof(tag)))
			return;
		p->layers |= L_VLAN;
		p->vlan = bpf_ntohs(tag[0]) & 0xfff;
		proto = bpf_ntohs(tag[1]);
		off += sizeof(tag);
	}
	parse_l3(s, off, proto, p);
}

static __always_inline __u64 mix(__u64 h, __u64 v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h;
}

/* fingerprint hashes what survives bridging and NAT: no addresses, ports,
 * ICMP ids, TTLs or checksums; no L2 fields either, because a drop is
 * usually decoded from the network header on. */
static __always_inline __u64 fingerprint(const struct pkt *p)
{
	__u64 h = 0xcbf29ce484222325ULL;
	h = mix(h, ((__u64)p->ethertype << 48) | ((__u64)p->proto << 40) | ((__u64)p->l3_len << 16) |
			   p->l4_extra);
	h = mix(h, p->ip_id);
	h = mix(h, ((__u64)p->seq << 32) | p->ack);
	h = mix(h, ((__u64)p->tcp_flags << 40) | ((__u64)p->icmp_type << 32) |
			   ((__u64)p->icmp_code << 24) | p->icmp_seq);
	if (p->layers & L_ARP) {
		__u64 a = 0, b = 0;
		__builtin_memcpy(&a, p->arp_sha, 6);
		__builtin_memcpy(&b, p->arp_tha, 6);
		h = mix(h, a ^ ((__u64)p->arp_op << 48));
		h = mix(h, b);
		h = mix(h, *(__u32 *)p->src | ((__u64)(*(__u32 *)p->dst) << 32));
	}
	/* Fragments of one datagram share the IP ID (IPv4) or the fragment
	 * identification (IPv6) and, in the middle, the length. */
	if (p->layers & L_FRAG)
		h = mix(h, ((__u64)p->frag_off << 32) | p->frag_id);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* hdr_hash hashes every byte of the decoded headers: equal hashes at two
 * hops of a packet mean the second can go as a hop_next_event. Never 0,
 * which seen.hdr_h uses for "no headers sent". */
static __always_inline __u64 hdr_hash(const struct pkt *p)
{
	__u64 w[(sizeof(*p) + 7) / 8] = {};
	__builtin_memcpy(w, p, sizeof(*p));
	__u64 h = 0x9e3779b97f4a7c15ULL;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(w) / 8); i++)
		h = (h ^ w[i]) * 0xff51afd7ed558ccdULL;
	h ^= h >> 29;
	return h | 1;
}

static __always_inline __u64 new_id(void)
{
	__u32 zero = 0;
	__u64 *c = bpf_map_lookup_elem(&id_counter, &zero);
	if (!c)
		return 0;
	*c += 1;
	return ((__u64)(bpf_get_smp_processor_id() + 1) << 48) | (*c & 0xffffffffffffULL);
}

static __always_inline bool addr_match(const volatile struct filter_pred *f, const __u8 *a)
{
	bool ok = true;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 w;
		__builtin_memcpy(&w, a + 4 * i, 4);
		if ((w & f->mask[i]) != f->val[i])
			ok = false;
	}
	return ok;
}

static __always_inline bool pred_match(const volatile struct filter_pred *f, const struct pkt *p)
{
	bool r = false;
	__u16 layers = f->layers;
	__u16 lo = f->lo, hi = f->hi;
	if (!layers || (p->layers & layers)) {
		switch (f->field) {
		case F_SRC_ADDR:
			r = addr_match(f, p->src);
			break;
		case F_DST_ADDR:
			r = addr_match(f, p->dst);
			break;
		case F_ANY_ADDR:
			r = addr_match(f, p->src) || addr_match(f, p->dst);
			break;
		case F_SRC_PORT:
			r = p->sport >= lo && p->sport <= hi;
			break;
		case F_DST_PORT:
			r = p->dport >= lo && p->dport <= hi;
			break;
		case F_ANY_PORT:
			r = (p->sport >= lo && p->sport <= hi) || (p->dport >= lo && p->dport <= hi);
			break;
		case F_PROTO:
			r = p->proto >= lo && p->proto <= hi;
			break;
		case F_ETHERTYPE:
			r = p->ethertype >= lo && p->ethertype <= hi;
			break;
		}
	}
	return r != (bool)f->negate;
}

/* filter_match evaluates the filter on a decoded packet: bounded loops over
 * the clauses and predicates user space filled in, stopping at the first
 * clause that matches. One subprogram shared by the hooks. */
static __noinline bool filter_match(const struct pkt *p)
{
	__u32 nc = filter_nclauses;
#pragma clang loop unroll(disable)
	for (__u32 c = 0; c < FILTER_MAX_CLAUSES; c++) {
		if (c >= nc)
			break;
		__u32 n = filter_clause_len[c];
		__u32 i;
#pragma clang loop unroll(disable)
		for (i = 0; i < FILTER_MAX_PREDS; i++) {
			if (i >= n || !pred_match(&filter_preds[c][i], p))
				break;
		}
		if (i >= n)
			return true;
	}
	return false;
}

/* filter_frame gives the filter what the decode would give it (the layers,
 * ethertype, protocol, addresses and ports), read in place, for the frames
 * most traffic is: untagged IPv4 without options or fragments and IPv6
 * without extension headers, their L4 header in the linear data. It fills
 * those fields of p, and only those, and returns FRAME_MATCHED or
 * FRAME_REJECTED; for any other frame it returns FRAME_OTHER, and the full
 * decode reads it. A packet the filter rejects leaves the hook after a
 * few loads and a few lines of code: the decode, most of the program's
 * code, was most of what it cost above a program that does nothing. */
enum { FRAME_OTHER, FRAME_REJECTED, FRAME_MATCHED };

static __always_inline int filter_frame(struct __sk_buff *ctx, struct pkt *p)
{
	const unsigned char *d = (const unsigned char *)(long)ctx->data;
	const unsigned char *e = (const unsigned char *)(long)ctx->data_end;
	if (ctx->vlan_present || d + 34 > e)
		return FRAME_OTHER;
	__u16 ethertype = bpf_ntohs(*(const __u16 *)(d + 12));
	__u8 proto;
	__u32 l4;
	if (ethertype == ETH_P_IP) {
		/* No options, no fragment (parse_l3 reads L4 only in the first,
		 * and flags any as L_FRAG). */
		if (d[14] != 0x45 || (*(const __u16 *)(d + 20) & bpf_htons(0x3fff)))
			return FRAME_OTHER;
		proto = d[23];
		l4 = 34;
	} else if (ethertype == ETH_P_IPV6) {
		if (d + 54 > e)
			return FRAME_OTHER;
		proto = d[20];
		if (proto == 0 || proto == 43 || proto == 44 || proto == 60) /* extension headers */
			return FRAME_OTHER;
		l4 = 54;
	} else {
		return FRAME_OTHER;
	}
	__u16 layers = L_ETH | (ethertype == ETH_P_IP ? L_IPV4 : L_IPV6);
	__u16 sport = 0, dport = 0;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		/* parse_l4's loads: 16 bytes of TCP, 8 of UDP */
		if (d + l4 + (proto == IPPROTO_TCP ? 16 : 8) > e)
			return FRAME_OTHER;
		sport = bpf_ntohs(*(const __u16 *)(d + l4));
		dport = bpf_ntohs(*(const __u16 *)(d + l4 + 2));
		layers |= proto == IPPROTO_TCP ? L_TCP : L_UDP;
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		if (d + l4 + 8 > e)
			return FRAME_OTHER;
		layers |= proto == IPPROTO_ICMP ? L_ICMP : L_ICMPV6;
	}
	p->layers = layers;
	p->ethertype = ethertype;
	p->proto = proto;
	/* A word at a time (a memcpy from the packet goes byte by byte). */
	__u32 *src = (__u32 *)p->src, *dst = (__u32 *)p->dst;
	if (ethertype == ETH_P_IP) {
		src[0] = *(const __u32 *)(d + 26);
		dst[0] = *(const __u32 *)(d + 30);
#pragma unroll
		for (int i = 1; i < 4; i++)
			src[i] = dst[i] = 0;
	} else {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			src[i] = *(const __u32 *)(d + 22 + 4 * i);
			dst[i] = *(const __u32 *)(d + 38 + 4 * i);
		}
	}
	p->sport = sport;
	p->dport = dport;
	return filter_match(p) ? FRAME_MATCHED : FRAME_REJECTED;
}

/* side_hash hashes one end of a packet: an address and a port. */
static __always_inline __u32 side_hash(const __u8 *addr, __u16 port)
{
	__u64 a, b;
	__builtin_memcpy(&a, addr, 8);
	__builtin_memcpy(&b, addr + 8, 8);
	__u64 h = mix(mix(0x84222325cbf29ce4ULL, a), b ^ port);
	return (__u32)(h ^ (h >> 32));
}

/* same_packet tells whether an entry (s) is the packet now seen: the same
 * fingerprint, recently, and at least one end unchanged (NAT rewrites one
 * end at a time: DNAT the destination, SNAT the source). */
static __always_inline bool same_packet(const struct seen *s, __u64 fp, __u32 src_h, __u32 dst_h,
					__u64 now)
{
	return s->fp == fp && (__s64)(now - s->ts) < (__s64)join_window_ns &&
	       (s->src_h == src_h || s->dst_h == dst_h);
}

/* continues tells whether a hop at hook continues the packet of entry s:
 * the same packet, at a hook it has not passed yet (a second visit to a
 * hook means a new packet in a reused skb, or identical content). */
static __always_inline bool continues(const struct seen *s, __u64 fp, __u32 src_h, __u32 dst_h,
				      __u64 now, __u32 hook)
{
	if (!same_packet(s, fp, src_h, dst_h, now))
		return false;
	bool again = false;
	__u32 n = s->nhooks;
#pragma unroll
	for (int i = 0; i < MAX_HOOKS; i++) {
		if (i < n && s->hooks[i] == hook)
			again = true;
	}
	return !again;
}

/* add_hook records a hop in entry s. */
static __always_inline void add_hook(struct seen *s, __u32 hook, __u64 now, __u32 src_h, __u32 dst_h)
{
	__u32 n = s->nhooks;
	if (n < MAX_HOOKS) {
		s->hooks[n & (MAX_HOOKS - 1)] = hook;
		s->nhooks = n + 1;
	}
	s->ts = now;
	s->src_h = src_h;
	s->dst_h = dst_h;
}

/* traced_lately tells whether a packet may be in flight in the flights or
 * the packet table: one was traced within the join window (and the slack). */
static __always_inline bool traced_lately(void)
{
	__u32 zero = 0;
	__u64 *t = bpf_map_lookup_elem(&last_traced, &zero);
	if (!t)
		return true;
	return bpf_jiffies64() - *t < traced_window_jiffies;
}

/* mark_traced notes that a packet was traced at now (ns). Each CPU does so
 * at most once every MARK_EVERY_NS, far inside the slack of
 * traced_window_jiffies: reading jiffies and the shared word at every hop
 * cost serve's hooks a tenth of their time. The shared word is written at
 * most once a tick, so CPUs rarely contend for it. */
#define MARK_EVERY_NS 1000000
static __always_inline void mark_traced(__u64 now)
{
	__u32 zero = 0;
	__u64 *m = bpf_map_lookup_elem(&marked_at, &zero);
	if (!m)
		return;
	if (now - *m < MARK_EVERY_NS)
		return;
	*m = now;
	__u64 *t = bpf_map_lookup_elem(&last_traced, &zero);
	if (!t)
		return;
	__u64 j = bpf_jiffies64();
	if (*t != j)
		*t = j;
}

/* SEEN_SLACK_NS pads seen_until: CPUs that move packets at once race to
 * write it, and the later write may be the earlier time; serve's clock
 * (coarse_now) lags by up to a jiffy or two, 10 ms each at HZ 100. */
#define SEEN_SLACK_NS 100000000

/* seen_live tells whether seen_pkts may hold an entry that continues a
 * packet at now. */
static __always_inline bool seen_live(__u64 now)
{
	__u32 zero = 0;
	__u64 *u = bpf_map_lookup_elem(&seen_until, &zero);
	return !u || now < *u;
}

/* seen_extend keeps seen_pkts looked in until an entry whose last hop is
 * at now can no longer continue. Before the entry is written: a CPU that
 * finds the entry then also finds the new time. */
static __always_inline void seen_extend(__u64 now)
{
	__u32 zero = 0;
	__u64 *u = bpf_map_lookup_elem(&seen_until, &zero);
	if (!u)
		return;
	__u64 until = now + join_window_ns + SEEN_SLACK_NS;
	if (*u < until - SEEN_SLACK_NS / 2)
		*u = until;
}

/* flight_idx is the slot of key in flights. */
static __always_inline __u32 flight_idx(__u64 key)
{
	return (__u32)((key * 0x9e3779b97f4a7c15ULL) >> 40) & flight_mask;
}

/* claim_slot readies this CPU's slot f for packet key: a packet of another
 * key still on its way there moves to the shared table first, so a slot is
 * a cache, never a loss. */
static __always_inline void claim_slot(struct flight *f, __u64 key, __u64 now)
{
	if (f->key && f->key != key && !f->ended && (__s64)(now - f->s.ts) < (__s64)join_window_ns) {
		seen_extend(now);
		bpf_map_update_elem(&seen_pkts, &f->key, &f->s, BPF_ANY);
	}
	f->key = key;
}

/* from_other_cpu moves packet key from another CPU's slot idx into this
 * CPU's slot f, if it is there and continues at hook: a packet that
 * crossed CPUs between two hooks (a qdisc, RPS). Returns whether it did. */
struct lost_at {
	__u64 key, fp, now;
	__u32 src_h, dst_h, hook, idx;
};

static __noinline bool from_other_cpu(struct flight *f, const struct lost_at *l)
{
	__u64 key = l->key, now = l->now;
	__u32 idx = l->idx;
	__u32 me = bpf_get_smp_processor_id();
	for (__u32 c = 0; c < MAX_PROBE_CPUS; c++) {
		if (c >= nr_cpus)
			break;
		if (c == me)
			continue;
		struct flight *o = bpf_map_lookup_percpu_elem(&flights, &idx, c);
		if (!o || o->key != key || !continues(&o->s, l->fp, l->src_h, l->dst_h, now, l->hook))
			continue;
		claim_slot(f, key, now);
		__builtin_memcpy(&f->s, &o->s, sizeof(f->s));
		o->key = 0;
		return true;
	}
	return false;
}

#define AT_END 1        /* this hook is a packet's last traced hook */
#define AT_AFTER_PEER 2 /* every packet here passed a traced hook before */

/* hook_slot_idx places an interface in hook_slots; tracer/hookflags.go
 * computes the same. */
static __always_inline __u32 hook_slot_idx(__u32 netns_ino, __u32 ifindex)
{
	return ((netns_ino * 2654435761U) ^ (ifindex * 0x85ebca6bU)) >> 22; /* < HOOK_SLOTS */
}

/* at_hook reads what the hook in direction dir of an interface means. */
static __always_inline __u32 at_hook(__u32 netns_ino, __u32 ifindex, __u8 dir)
{
	__u32 idx = hook_slot_idx(netns_ino, ifindex);
	struct hook_slot *slot = bpf_map_lookup_elem(&hook_slots, &idx);
	if (!slot)
		return 0;
	__u32 v = 0;
	if (slot->key.netns_ino == netns_ino && slot->key.ifindex == ifindex) {
		v = slot->flags;
	} else if (slot->flags & HOOK_MORE) {
		struct hook_key k = { .netns_ino = netns_ino, .ifindex = ifindex };
		__u32 *f = bpf_map_lookup_elem(&hook_more, &k);
		if (f)
			v = *f;
	}
	if (dir)
		return v & HOOK_END_EGRESS ? AT_END : 0;
	return (v & HOOK_END_INGRESS ? AT_END : 0) | (v & HOOK_AFTER_PEER ? AT_AFTER_PEER : 0);
}

static const struct hist zero_hist = {};

/* hist_cache_idx is key's slot in the half of hist_cache (0 or
 * HIST_CACHE_SLOTS); tracer/aggregate.go needs no copy of it. */
static __always_inline __u32 hist_cache_idx(const struct hook_pair *key, __u32 half)
{
	__u64 a, b;
	__builtin_memcpy(&a, &key->from, 8);
	__builtin_memcpy(&b, &key->to, 8);
	__u64 h = (a ^ (b * 0xff51afd7ed558ccdULL)) * 0x9e3779b97f4a7c15ULL;
	return (__u32)(h >> 56) | half; /* 56 = 64 - log2(HIST_CACHE_SLOTS) */
}

/* hist_find returns the histogram of key on this CPU: its slot of
 * hist_cache when it has (or can take) one, else its entry in map. */
static __always_inline struct hist *hist_find(void *map, __u32 half, const struct hook_pair *key)
{
	__u32 idx = hist_cache_idx(key, half);
	struct hist_slot *c = bpf_map_lookup_elem(&hist_cache, &idx);
	if (c) {
		__u64 a, b, ca, cb;
		__builtin_memcpy(&a, &key->from, 8);
		__builtin_memcpy(&b, &key->to, 8);
		__builtin_memcpy(&ca, &c->key.from, 8);
		__builtin_memcpy(&cb, &c->key.to, 8);
		if (ca == a && cb == b)
			return &c->h;
		if (!ca && !cb) { /* free: this CPU's own, no one else writes it */
			__builtin_memcpy(&c->key, key, sizeof(*key));
			return &c->h;
		}
	}
	struct hist *h = bpf_map_lookup_elem(map, key);
	if (h)
		return h;
	bpf_map_update_elem(map, key, &zero_hist, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* hist_add counts v (ns) in the histogram of key: hop_hist's (half 0) or
 * path_hist's (half HIST_CACHE_SLOTS). */
static __always_inline void hist_add(void *map, __u32 half, const struct hook_pair *key, __u64 v,
				     __u32 weight, bool packet)
{
	struct hist *h = hist_find(map, half, key);
	if (!h) {
		count(&lost, LOST_AGGREGATE);
		return;
	}
	if (packet)
		h->packets += 1;
	if (!weight)
		return;
	/* The first bound v is within, from the smallest: a hop takes a few
	 * µs, so this is two or three compares, where counting the bounds
	 * below v took all nineteen (13 ns a hook). */
	__u32 idx = HIST_BOUNDS;
#pragma unroll
	for (int i = 0; i < HIST_BOUNDS; i++) {
		if (v <= hist_bounds_ns[i]) {
			idx = i;
			break;
		}
	}
	if (idx < HIST_BUCKETS)
		h->buckets[idx] += weight;
	h->sum_ns += v * weight;
}

/* coarse_now is the time serve joins a packet's hops by: the clock as this
 * CPU's first hook in the current jiffy read it. It lags the clock by up to
 * a jiffy and another CPU's by up to two, which a one-second join window
 * does not notice (same_packet compares signed). Reading the clock source
 * at every hook cost more than a fifth of an aggregating hook; the jiffies
 * are a load. */
static __always_inline __u64 coarse_now(void)
{
	__u32 zero = 0;
	struct timing *t = bpf_map_lookup_elem(&timings, &zero);
	if (!t)
		return bpf_ktime_get_ns();
	__u64 j = bpf_jiffies64();
	if (t->jiffy != j) {
		__u64 now = bpf_ktime_get_ns();
		/* The budget of timed_weight grows with the time since the
		 * last jiffy this CPU saw, whatever HZ is. */
		__u64 gap = now - t->ns;
		if (gap > 1000000000ULL)
			gap = 1000000000ULL;
		__u64 credit = t->credit + gap * timed_per_sec; /* a packet is 1e9 */
		__u64 most = (__u64)timed_burst * 1000000000ULL;
		t->credit = credit < most ? credit : most;
		t->jiffy = j;
		t->ns = now;
	}
	return t->ns;
}

/* timed_weight decides whether a new packet's hops are timed into the
 * histograms: the weight it is counted with, or 0. Timing costs a
 * histogram update at every hook, a third of what serve's hooks cost; a
 * CPU busy with a flood times a sample of it. */
static __always_inline __u32 timed_weight(void)
{
	if (!timed_per_sec)
		return 1;
	__u32 zero = 0;
	struct timing *t = bpf_map_lookup_elem(&timings, &zero);
	if (!t)
		return 1;
	if (t->credit >= 1000000000ULL) {
		t->credit -= 1000000000ULL;
		t->skip = 0;
		return 1;
	}
	if (++t->skip < time_one_in)
		return 0;
	t->skip = 0;
	return time_one_in;
}

/* time_hop counts the hop of a timed packet from entry s's last hook to
 * this one (netns_ino, ifindex_dir). A subprogram, so its stack is not
 * added to the hook's, which the filter's call already fills. */
static __noinline void time_hop(struct seen *s, __u32 netns_ino, __u32 ifindex_dir)
{
	if (!s)
		return;
	__u64 t = bpf_ktime_get_ns();
	struct hook_pair k = { .from = s->last, .to = { netns_ino, ifindex_dir } };
	hist_add(&hop_hist, 0, &k, t - s->fine_ts, s->weight, false);
	s->fine_ts = t;
}

/* agg_hop moves entry s's packet on to this hook, timing the hop if the
 * packet is timed. */
static __always_inline void agg_hop(struct seen *s, __u32 netns_ino, __u32 ifindex_dir)
{
	if (s->weight)
		time_hop(s, netns_ino, ifindex_dir);
	s->last.netns_ino = netns_ino;
	s->last.ifindex_dir = ifindex_dir;
}

/* agg_path counts a packet at its last traced hook (netns_ino,
 * ifindex_dir), after agg_hop, and times it if it is timed. */
static __noinline void agg_path(const struct seen *s, __u32 netns_ino, __u32 ifindex_dir)
{
	if (!s)
		return;
	struct hook_pair k = { .from = s->first, .to = { netns_ino, ifindex_dir } };
	hist_add(&path_hist, HIST_CACHE_SLOTS, &k, s->fine_ts - s->first_ts, s->weight, true);
}

/* packet_id joins a hop to its packet and keeps its entry, or returns 0
 * for a packet the filter rejects (wanted false). A packet continues from
 * its slot on this CPU, else from the shared table (moved out of a slot),
 * else, where every packet comes known (the ingress of a veth whose peer is
 * traced), from another CPU's slot; else it is new here, if wanted, and a
 * new packet where every packet comes known lost its entry on the way: it
 * was evicted from the shared table, counted. Rejected packets write
 * nothing: at their later hooks the filter is evaluated again, so a packet
 * NAT rewrites to match is traced from where it matches. */
static __always_inline __u64 packet_id(__u64 key, __u64 fp, __u64 now, __u32 hook, __u32 netns_ino,
				       __u32 ifindex, __u8 dir, const struct pkt *p, bool wanted,
				       struct seen **entry)
{
	__u32 src_h = side_hash(p->src, p->sport);
	__u32 dst_h = side_hash(p->dst, p->dport);
	__u32 ifdir = ifindex << 1 | dir; /* the hook, for the aggregates */
	__u32 at = at_hook(netns_ino, ifindex, dir);
	bool end = at & AT_END;
	__u32 idx = flight_idx(key);
	struct flight *f = bpf_map_lookup_elem(&flights, &idx);
	if (!f)
		return 0;

	bool here = f->key == key && continues(&f->s, fp, src_h, dst_h, now, hook);
	struct seen *s = NULL;
	if (!here) {
		if (seen_live(now))
			s = bpf_map_lookup_elem(&seen_pkts, &key);
		if (s && continues(s, fp, src_h, dst_h, now, hook)) {
			if (aggregate_only)
				agg_hop(s, netns_ino, ifdir);
			if (!end)
				seen_extend(now);
			add_hook(s, hook, now, src_h, dst_h);
			if (!end) {
				*entry = s;
				return s->id;
			}
			/* Past its last traced hook: back to this CPU's slot. */
			if (aggregate_only)
				agg_path(s, netns_ino, ifdir);
			claim_slot(f, key, now);
			__builtin_memcpy(&f->s, s, sizeof(f->s));
			f->ended = 1;
			bpf_map_delete_elem(&seen_pkts, &key);
			*entry = &f->s;
			return f->s.id;
		}
		if (at & AT_AFTER_PEER) {
			struct lost_at l = { key, fp, now, src_h, dst_h, hook, idx };
			here = from_other_cpu(f, &l);
		}
	}
	if (here) {
		if (aggregate_only)
			agg_hop(&f->s, netns_ino, ifdir);
		add_hook(&f->s, hook, now, src_h, dst_h);
		if (end && aggregate_only)
			agg_path(&f->s, netns_ino, ifdir);
		f->ended = end;
		*entry = &f->s;
		return f->s.id;
	}

	if (!wanted)
		return 0;
	/* Nothing known under the key where every packet comes known: its
	 * entry was evicted. An entry that is there but does not continue
	 * belongs to another packet with the same key (a content key's equal
	 * content), which is not an eviction. */
	if ((at & AT_AFTER_PEER) && !s && f->key != key)
		count(&lost, LOST_EVICTED);
	if (s) /* a stale entry under the same key (a reused skb, equal content) */
		bpf_map_delete_elem(&seen_pkts, &key);
	claim_slot(f, key, now);
	f->ended = end;
	struct seen *n = &f->s;
	__builtin_memset(n, 0, sizeof(*n));
	n->id = new_id();
	n->fp = fp;
	n->ts = now;
	n->src_h = src_h;
	n->dst_h = dst_h;
	n->nhooks = 1;
	n->hooks[0] = hook;
	if (aggregate_only) {
		n->first.netns_ino = netns_ino;
		n->first.ifindex_dir = ifdir;
		n->last = n->first;
		n->weight = timed_weight();
		if (n->weight) {
			n->first_ts = bpf_ktime_get_ns();
			n->fine_ts = n->first_ts;
		}
		if (end)
			agg_path(n, netns_ino, ifdir);
	}
	*entry = n;
	return n->id;
}

/* What an underlay hook learns from a VXLAN packet's outer headers. */
struct tunnel {
	__u32 bits; /* hop_event.tunnel */
	__u8 peer[16];
};

struct vxlan_udp {
	__be16 sport;
	__be16 dport;
	__be16 len;
	__be16 csum;
	__u8 flags; /* 0x08: the VNI is valid */
	__u8 reserved[3];
	__be32 vni; /* the VNI in the top 24 bits */
};

/* tunnel_port tells whether UDP port carries VXLAN (tunnel_ports). */
static __always_inline bool tunnel_port(__u32 port)
{
	__u32 word = port >> 5;
	__u32 *bits = bpf_map_lookup_elem(&tunnel_ports, &word);
	return bits && (*bits & (1U << (port & 31)));
}

/* vxlan_inner decodes the outer headers of a VXLAN packet at an overlay's
 * underlay hook (the host interface its encapsulated packets cross): it
 * fills t and returns the offset of the inner Ethernet header, or 0 for
 * any other packet. The peer is the other node: the outer destination of a
 * packet leaving (dir 1), the outer source of one arriving. */
static __always_inline __u32 vxlan_inner(const struct src *s, __u8 dir, struct tunnel *t)
{
	struct ethhdr eth HDR;
	if (load(s, 0, &eth, sizeof(eth)))
		return 0;
	__u32 off = sizeof(eth);
	__u16 proto = bpf_ntohs(eth.h_proto);
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		__be16 tag[2] HDR;
		if (load(s, off, tag, sizeof(tag)))
			return 0;
		proto = bpf_ntohs(tag[1]);
		off += sizeof(tag);
	}
	if (proto == ETH_P_IP) {
		struct ipv4hdr_min h HDR;
		if (load(s, off, &h, sizeof(h)) || h.proto != IPPROTO_UDP || (bpf_ntohs(h.frag_off) & 0x1fff))
			return 0;
		__builtin_memcpy(t->peer, dir ? h.daddr : h.saddr, 4);
		off += (h.ihl_ver & 0xf) * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr_min h HDR;
		if (load(s, off, &h, sizeof(h)) || h.nexthdr != IPPROTO_UDP)
			return 0;
		__builtin_memcpy(t->peer, dir ? h.daddr : h.saddr, 16);
		t->bits = TUNNEL_PEER_V6;
		off += sizeof(h);
	} else {
		return 0;
	}
	struct vxlan_udp u HDR;
	if (load(s, off, &u, sizeof(u)) || !(u.flags & 0x08) || !tunnel_port(bpf_ntohs(u.dport)))
		return 0;
	t->bits |= TUNNEL_VXLAN | (bpf_ntohl(u.vni) >> 8);
	return off + sizeof(u);
}

/* frame_hash hashes the header bytes the decode reads from an untagged
 * frame: IPv4 without options (Ethernet 14, IPv4 20, then 8 of UDP or ICMP
 * or 16 of TCP, its ports to its window) or IPv6 without extension headers
 * (Ethernet 14, IPv6 40, then the same of L4), and the VLAN tag the device
 * took off: equal hashes at two hops mean the decode would give the same
 * headers. 0 for any other frame, or one shorter in the linear data. Never
 * 0 otherwise. */
static __always_inline __u64 frame_hash(struct __sk_buff *ctx)
{
	const unsigned char *d = (const unsigned char *)(long)ctx->data;
	const unsigned char *e = (const unsigned char *)(long)ctx->data_end;
	if (d + 42 > e)
		return 0;
	__u64 h = 0x9e3779b97f4a7c15ULL ^ ((__u64)ctx->vlan_present << 32 | ctx->vlan_tci);
	__u16 ethertype = *(const __u16 *)(d + 12);
	if (ethertype == bpf_htons(ETH_P_IP) && d[14] == 0x45) {
#pragma unroll
		for (int i = 0; i < 5; i++)
			h = (h ^ *(const __u64 *)(d + 8 * i)) * 0xff51afd7ed558ccdULL;
		h = (h ^ *(const __u16 *)(d + 40)) * 0xff51afd7ed558ccdULL;
		if (d[23] == IPPROTO_TCP) { /* bytes 42 to 49: TCP's sequence number to window */
			if (d + 50 > e)
				return 0;
			h = (h ^ *(const __u64 *)(d + 42)) * 0xff51afd7ed558ccdULL;
		}
	} else if (ethertype == bpf_htons(ETH_P_IPV6) && (d[14] >> 4) == 6) {
		__u8 next = d[20];
		/* Extension headers: the decode walks them. */
		if (next == 0 || next == 43 || next == 44 || next == 60)
			return 0;
		if (d + 62 > e)
			return 0;
#pragma unroll
		for (int i = 0; i < 7; i++)
			h = (h ^ *(const __u64 *)(d + 8 * i)) * 0xff51afd7ed558ccdULL;
		h = (h ^ *(const __u32 *)(d + 56)) * 0xff51afd7ed558ccdULL;
		h = (h ^ *(const __u16 *)(d + 60)) * 0xff51afd7ed558ccdULL;
		if (next == IPPROTO_TCP) { /* bytes 62 to 69: TCP's sequence number to window */
			if (d + 70 > e)
				return 0;
			h = (h ^ *(const __u64 *)(d + 62)) * 0xff51afd7ed558ccdULL;
		}
	} else {
		return 0;
	}
	h ^= h >> 29;
	return h | 1;
}

/* With snaplen up to SNAP_HASHED, a packet's later hops whose bytes are
 * those of its last hop go compact as they do without snaplen; a larger
 * snaplen copies every hop's bytes (hashing them would cost what copying
 * does). */
#define SNAP_HASHED 128

/* snap_hash mixes into frame_h (frame_hash: the headers) the packet's first
 * min(len, snaplen) bytes and their count: equal at two hops of a packet,
 * the bytes the later hop would carry are the earlier one's. 0 when they
 * cannot be read. Its own frame: the bytes take a sixth of the stack. */
static __noinline __u64 snap_hash(struct __sk_buff *ctx, __u64 frame_h)
{
	__u64 w[SNAP_HASHED / 8] = {};
	__u64 n = ctx->len;
	__u64 cap = snaplen;
	if (!n || !cap || cap > SNAP_HASHED)
		return 0;
	__u64 m = n - 1; /* clamped below cap, plus one, as hop's copy does */
	asm volatile("" : "+r"(m));
	if (m >= cap)
		m = cap - 1;
	asm volatile("" : "+r"(m));
	if (bpf_skb_load_bytes(ctx, 0, w, m + 1))
		return 0;
	__u64 h = (frame_h ^ (m + 1)) * 0xff51afd7ed558ccdULL;
#pragma unroll
	for (int i = 0; i < SNAP_HASHED / 8; i++)
		h = (h ^ w[i]) * 0xff51afd7ed558ccdULL;
	h ^= h >> 29;
	return h | 1;
}

/* send_hop_next sends a hop of packet id whose headers are those of its
 * last hop: a hop_next_event. */
static __always_inline void send_hop_next(struct __sk_buff *ctx, __u8 dir, __u32 ifindex, __u32 netns_ino,
					  __u64 now, __u64 skb, __u64 id)
{
	struct out o;
	struct hop_next_event *nx = reserve(sizeof(*nx), &o);
	if (!nx) {
		count(&lost, LOST_HOPS);
		return;
	}
	nx->kind = EVENT_HOP_NEXT;
	nx->dir = dir;
	nx->_pad0 = 0;
	nx->ifindex = ifindex;
	nx->netns_ino = netns_ino;
	nx->len = ctx->len;
	nx->gso_segs = ctx->gso_segs;
	nx->gso_size = ctx->gso_size;
	nx->_pad1 = 0;
	nx->ts = now;
	nx->skb = skb;
	nx->id = id;
	submit(nx, &o);
}

/* continue_here joins a hop to the packet in this CPU's slot for the skb
 * when the frame is byte for byte what it was at the packet's last hop
 * (frame_h, from frame_hash): then the decode, the fingerprint and the
 * header hash would only say what the slot already knows, and the hop
 * skips them. That is a packet's every hop after its first across a bridge
 * (nothing rewrites the frame there), most of what a hook costs. Returns
 * false where packet_id has to decide: another packet or none in the slot,
 * a frame that changed (NAT, routing), a hook the packet has passed (a new
 * packet in the same skb), the reader without its headers. With kern ctx
 * only: content keys need the decode to find the slot. */
static __always_inline bool continue_here(struct __sk_buff *ctx, __u8 dir, __u64 frame_h)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(ctx);
	__u64 key = ptr_bits(kskb);
	__u32 idx = flight_idx(key);
	struct flight *f = bpf_map_lookup_elem(&flights, &idx);
	if (!f || f->key != key || f->s.frame_h != frame_h)
		return false;
	if (!aggregate_only && !f->s.hdr_h)
		return false;
	__u64 now = aggregate_only ? coarse_now() : bpf_ktime_get_ns();
	if ((__s64)(now - f->s.ts) >= (__s64)join_window_ns)
		return false;
	__u32 netns_ino = kskb->dev->nd_net.net->ns.inum;
	__u32 ifindex = ctx->ifindex;
	__u32 hook = (ifindex << 1 | dir) ^ (netns_ino * 2654435761U);
	__u32 n = f->s.nhooks;
#pragma unroll
	for (int i = 0; i < MAX_HOOKS; i++) {
		if (i < n && f->s.hooks[i] == hook)
			return false;
	}
	__u32 ifdir = ifindex << 1 | dir;
	bool end = at_hook(netns_ino, ifindex, dir) & AT_END;
	if (aggregate_only)
		agg_hop(&f->s, netns_ino, ifdir);
	add_hook(&f->s, hook, now, f->s.src_h, f->s.dst_h);
	if (end && aggregate_only)
		agg_path(&f->s, netns_ino, ifdir);
	f->ended = end;
	mark_traced(now);
	if (count_hook_calls)
		count(&hook_calls, HOOK_CALLS_CONTINUED);
	if (!aggregate_only)
		send_hop_next(ctx, dir, ifindex, netns_ino, now, key, f->s.id);
	return true;
}

/* hop traces a packet at a hook. At an underlay hook it traces only VXLAN
 * packets, as their inner packet, so that a packet's way continues from an
 * overlay's vxlan0 onto the wire (the same skb, headers pushed) and from
 * the wire into vxlan0. */
static __always_inline void hop(struct __sk_buff *ctx, __u8 dir, bool underlay)
{
	if (count_hook_calls)
		count(&hook_calls, 0);

	/* Decode first: the filter decides whether there is an event at all,
	 * and a packet it rejects costs only the decode and a lookup. */
	struct pkt p;
	struct src s = { .skb = ctx };
	struct tunnel tun = {};
	__u32 inner = 0;
	if (underlay) {
		inner = vxlan_inner(&s, dir, &tun);
		if (!inner)
			return;
	}
	/* The filter first: a packet it rejects is looked up only if it may
	 * continue a traced one (NAT can rewrite a packet out of the filter),
	 * which it cannot when nothing was traced lately. */
	int frame = FRAME_OTHER;
	if (filter_on && !underlay) {
		frame = filter_frame(ctx, &p);
		if (frame == FRAME_REJECTED && !traced_lately())
			return;
	}
	__u64 frame_h = 0;
	if (have_kern_ctx && !underlay && snaplen <= SNAP_HASHED) {
		frame_h = frame_hash(ctx);
		if (frame_h && snaplen)
			frame_h = snap_hash(ctx, frame_h);
		if (frame_h && continue_here(ctx, dir, frame_h))
			return;
	}
	/* The whole decode, after filter_frame: a packet it rejects costs no
	 * clearing of p either. */
	__builtin_memset(&p, 0, sizeof(p));
	parse_l2(&s, inner, &p);
	if (!underlay && ctx->vlan_present && !(p.layers & L_VLAN)) {
		/* The tag was taken off the frame into skb metadata. */
		p.layers |= L_VLAN;
		p.vlan = ctx->vlan_tci & 0xfff;
	}
	bool wanted = frame == FRAME_MATCHED;
	if (frame == FRAME_OTHER) {
		wanted = !filter_on || filter_match(&p);
		if (!wanted && !traced_lately())
			return;
	}
	/* serve reads the clock source only for the packets it times. */
	__u64 now = aggregate_only ? coarse_now() : bpf_ktime_get_ns();
	__u64 fp = fingerprint(&p);
	__u64 skb = 0;
	__u32 netns_ino = attach_netns_ino;
	if (have_kern_ctx) {
		struct sk_buff *kskb = bpf_cast_to_kern_ctx(ctx);
		skb = ptr_bits(kskb);
		netns_ino = kskb->dev->nd_net.net->ns.inum;
	}
	__u32 ifindex = ctx->ifindex;
	__u32 hook = (ifindex << 1 | dir) ^ (netns_ino * 2654435761U);
	struct seen *entry = NULL;
	__u64 id = packet_id(have_kern_ctx ? skb : fp, fp, now, hook, netns_ino, ifindex, dir, &p, wanted,
			     &entry);
	if (id)
		mark_traced(now);
	if (entry)
		entry->frame_h = frame_h;
	if (!id || aggregate_only)
		return;

	/* Headers as sent at the packet's last hop: the reader has them. Not
	 * with content keys (no kern ctx): packets of equal content on two
	 * CPUs can share an entry, and the order in which they set its hash
	 * need not be the reader's time order of their events. */
	if (!snaplen && have_kern_ctx && entry) {
		__u64 hh = hdr_hash(&p);
		bool same = !underlay && entry->hdr_h == hh;
		entry->hdr_h = hh;
		if (same) {
			send_hop_next(ctx, dir, ifindex, netns_ino, now, skb, id);
			return;
		}
	}

	__u32 cap = snaplen;
	if (cap > MAX_SNAPLEN)
		cap = MAX_SNAPLEN;
	struct out o;
	struct hop_event *ev = reserve(sizeof(*ev) + cap, &o);
	if (!ev) {
		count(&lost, LOST_HOPS);
		if (entry) /* the reader has not got these headers */
			entry->hdr_h = 0;
		return;
	}
	ev->kind = EVENT_HOP;
	ev->dir = dir;
	ev->ifindex = ifindex;
	ev->len = ctx->len;
	ev->gso_segs = ctx->gso_segs;
	ev->gso_size = ctx->gso_size;
	ev->tunnel = tun.bits;
	__builtin_memcpy(ev->tunnel_peer, tun.peer, sizeof(tun.peer));
	ev->ts = now;
	ev->skb = skb;
	ev->netns_ino = netns_ino;
	ev->fp = fp;
	ev->id = id;
	__builtin_memcpy(&ev->pkt, &p, sizeof(p));

	ev->cap_len = 0;
	if (cap) {
		__u64 n = ctx->len;
		/* n - 1 clamped below cap, plus one: a size in [1, cap] that
		 * 6.1's verifier can see (it learns nothing from n != 0). 64
		 * bits, so the clamp and the size are one register. */
		if (n > 0) {
			__u64 m = n - 1;
			asm volatile("" : "+r"(m)); /* keep clang from folding m + 1 back into n */
			if (m >= cap)
				m = cap - 1;
			asm volatile("" : "+r"(m)); /* and to use the clamped register */
			if (bpf_skb_load_bytes(ctx, 0, (void *)(ev + 1), m + 1) == 0)
				ev->cap_len = m + 1;
		}
		/* The reader has this hop's bytes for the hops that go compact
		 * after it; without them, none may. */
		if (entry)
			entry->hdr_h = ev->cap_len ? 1 : 0;
	}
	submit(ev, &o);
}

SEC("tc")
int hop_ingress_tcx(struct __sk_buff *ctx)
{
	hop(ctx, 0, false);
	return TCX_NEXT;
}

SEC("tc")
int hop_egress_tcx(struct __sk_buff *ctx)
{
	hop(ctx, 1, false);
	return TCX_NEXT;
}

SEC("tc")
int hop_ingress_legacy(struct __sk_buff *ctx)
{
	hop(ctx, 0, false);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int hop_egress_legacy(struct __sk_buff *ctx)
{
	hop(ctx, 1, false);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int hop_underlay_ingress_tcx(struct __sk_buff *ctx)
{
	hop(ctx, 0, true);
	return TCX_NEXT;
}

SEC("tc")
int hop_underlay_egress_tcx(struct __sk_buff *ctx)
{
	hop(ctx, 1, true);
	return TCX_NEXT;
}

SEC("tc")
int hop_underlay_ingress_legacy(struct __sk_buff *ctx)
{
	hop(ctx, 0, true);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int hop_underlay_egress_legacy(struct __sk_buff *ctx)
{
	hop(ctx, 1, true);
	return TC_ACT_UNSPEC;
}

/* decode_inner replaces p, the outer headers of a VXLAN packet whose
 * network header is at head + nh, by the packet inside, as the underlay
 * hooks see it: a drop after the encapsulation (a firewall that blocks the
 * overlay's port) or before the decapsulation then joins that packet's
 * journey. p is kept when what follows is not VXLAN. A global function, so
 * the verifier checks it once, not once for each way the outer headers
 * can be decoded. */
__noinline int decode_inner(__u64 head, __u32 nh, struct pkt *p)
{
	if (!p)
		return 0;
	struct src s = { .base = (const unsigned char *)head };
	__u32 off = nh + 40; /* IPv6 */
	if (p->layers & L_IPV4) {
		__u8 ihl;
		if (load(&s, nh, &ihl, 1))
			return 0;
		off = nh + (ihl & 0xf) * 4;
	}
	struct vxlan_udp u HDR;
	if (load(&s, off, &u, sizeof(u)) || !(u.flags & 0x08))
		return 0;
	/* In place: a second summary would not fit the stack beside the
	 * drop program's on 6.1. */
	__builtin_memset(p, 0, sizeof(*p));
	parse_l2(&s, off + sizeof(u), p);
	return 1;
}

/* decode_skb fills p from a kernel skb, starting at its network header;
 * for a VXLAN packet, the packet inside. */
static __always_inline void decode_skb(struct sk_buff *skb, struct pkt *p)
{
	const unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 mh = skb->mac_header;
	if (mh != (__u16)~0U && mh < nh) {
		struct ethhdr eth HDR;
		if (!bpf_probe_read_kernel(&eth, sizeof(eth), head + mh)) {
			p->layers |= L_ETH;
			__builtin_memcpy(p->dst_mac, eth.h_dest, 6);
			__builtin_memcpy(p->src_mac, eth.h_source, 6);
		}
	}
	if (nh == (__u16)~0U)
		return;
	struct src s = { .base = head };
	parse_l3(&s, nh, bpf_ntohs(skb->protocol), p);
	__u64 head_bits; /* a plain number, as a global function takes it */
	if ((p->layers & L_UDP) && tunnel_port(p->dport) &&
	    !bpf_probe_read_kernel(&head_bits, sizeof(head_bits), &skb->head))
		decode_inner(head_bits, nh, p);
}

/* drop_id returns the packet id of an entry the dropped packet matches.
 * With the skb key the entry goes with the skb; a content key may be
 * shared by copies of a packet the bridge flooded, still on their way. */
static __always_inline __u64 drop_id(struct seen *s, __u64 key, __u64 fp, __u32 src_h, __u32 dst_h,
				     __u64 now)
{
	if (!same_packet(s, fp, src_h, dst_h, now))
		return 0;
	__u64 id = s->id;
	if (have_kern_ctx)
		bpf_map_delete_elem(&seen_pkts, &key);
	return id;
}

/* count_drop counts a drop of a traced packet in drop_counts. */
static __always_inline void count_drop(struct sk_buff *skb, __u32 reason, struct hook_id last)
{
	struct drop_key k = { .reason = reason, .last = last };
	struct net_device *dev = skb->dev;
	if (dev) {
		k.at.netns_ino = dev->nd_net.net->ns.inum;
		k.at.ifindex_dir = dev->ifindex << 1;
	}
	__u64 *v = bpf_map_lookup_elem(&drop_counts, &k);
	if (v) {
		*v += 1;
		return;
	}
	__u64 one = 1;
	if (!bpf_map_update_elem(&drop_counts, &k, &one, BPF_NOEXIST))
		return;
	v = bpf_map_lookup_elem(&drop_counts, &k); /* another CPU added it */
	if (v)
		*v += 1;
	else
		count(&lost, LOST_AGGREGATE);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop, struct sk_buff *skb, void *location, unsigned int reason)
{
	/* Most freed skbs were never traced; none was when no packet was. */
	if (!traced_lately())
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct pkt p = {};
	__u64 key = 0;
	__u64 fp = 0;
	if (have_kern_ctx) {
		/* Most freed skbs were never seen by a hook: look before decoding. */
		key = ptr_bits(skb);
	} else {
		decode_skb(skb, &p);
		fp = fingerprint(&p);
		key = fp;
	}
	__u32 idx = flight_idx(key);
	struct flight *f = bpf_map_lookup_elem(&flights, &idx);
	if (!f)
		return 0;
	struct seen *s = NULL;
	if (f->key != key) {
		if (!seen_live(now))
			return 0;
		s = bpf_map_lookup_elem(&seen_pkts, &key);
		if (!s)
			return 0;
	}
	if (have_kern_ctx) {
		decode_skb(skb, &p);
		fp = fingerprint(&p);
	}
	/* The fingerprint leaves addresses and ports out, and without kern
	 * ctx it is the key: the packet's ends must agree too. */
	__u32 src_h = side_hash(p.src, p.sport);
	__u32 dst_h = side_hash(p.dst, p.dport);
	__u64 id = 0;
	struct hook_id last = {};
	if (s) {
		if (aggregate_only)
			last = s->last;
		id = drop_id(s, key, fp, src_h, dst_h, now);
	} else if (same_packet(&f->s, fp, src_h, dst_h, now)) {
		id = f->s.id;
		if (aggregate_only)
			last = f->s.last;
		if (have_kern_ctx)
			f->key = 0;
	}
	if (!id)
		return 0;
	if (aggregate_only) {
		count_drop(skb, reason, last);
		return 0;
	}

	struct drop_event *ev = reserve_ring(sizeof(*ev));
	if (!ev) {
		count(&lost, LOST_DROPS);
		return 0;
	}
	ev->kind = EVENT_DROP;
	ev->reason = reason;
	ev->ts = now;
	ev->skb = have_kern_ctx ? key : (__u64)skb;
	ev->id = id;
	ev->fp = fp;
	ev->location = (__u64)location;
	ev->ifindex = 0;
	ev->netns_ino = 0;
	struct net_device *dev = skb->dev;
	if (dev) {
		ev->ifindex = dev->ifindex;
		ev->netns_ino = dev->nd_net.net->ns.inum;
	}
	__builtin_memcpy(&ev->pkt, &p, sizeof(p));
	submit_ring(ev);
	return 0;
}
