// Package tracer loads hoptrace's BPF programs, attaches them to
// interfaces and turns what they report into event.Hop and event.Drop.
//
//	tr, err := tracer.Load(tracer.Options{})      // ErrPermission, ErrNoBTF, verifier log
//	defer tr.Close()                               // detaches everything
//	fmt.Println(tr.Features())                     // tcx=yes skb-key=yes drops=yes
//	err = tr.Attach(tracer.Iface{Name: "docker0"})
//	err = tr.Attach(tracer.Iface{Name: "eth0", Netns: "/proc/1234/ns/net"})
//	var r tracer.Record
//	for tr.ReadInto(ctx, &r) == nil {              // ends with ErrClosed or ctx.Err()
//		switch r.Kind {
//		case tracer.KindHop:  use(r.Hop)           // r.Hop.TimeNS -> tr.Clock().Wall(...)
//		case tracer.KindDrop: use(r.Drop)          // r.Drop.ReasonName, e.g. "NETFILTER_DROP"
//		}
//	}
//	loss, err := tr.Loss()                         // events the full ring buffer cost
//
// # Hooks
//
// Each attached interface gets a program on TC ingress and egress. Where the
// kernel has TCX (>= 6.6) they are BPF links at the head of the chain,
// returning TCX_NEXT; elsewhere, or with Options.ForceLegacy, they are
// direct-action cls_bpf filters on a clsact qdisc at the lowest free
// priority, returning TC_ACT_UNSPEC. Either way every program or filter
// after ours sees the packet unchanged and decides its fate. Legacy filters
// are named "hoptrace-<pid>.<start>-<dir>" (FilterPrefix; start is the process start time, so a recycled pid is not mistaken for a live hoptrace), plus "-q" when hoptrace
// created the qdisc; Detach removes only those, and the qdisc only if it
// was ours and is empty. SweepStale removes the filters of hoptrace
// processes that died without detaching. TCX links die with the process.
// Attaching inside another netns never moves the calling thread: netlink
// works through a handle in that netns, and the TCX attach (which resolves
// the ifindex in the caller's netns) runs on a throwaway locked thread.
//
// # Joining hops into packets
//
// Hop.PacketID is the join key: the first hook that sees a packet gives it
// a new id, stored with the packet's way so far under the
// kernel skb address (kernel >= 6.3, bpf_cast_to_kern_ctx; Hop.SkbKey) or,
// on older kernels, under the content fingerprint. A later hook reuses the
// id when the entry has the same fingerprint, is less than a second old,
// has at least one end (address and port) unchanged, since NAT rewrites one
// at a time, and has not been at this hook yet. A second visit to the same
// hook means a new packet in a reused skb, so two packets with identical
// bytes get different ids even when the kernel recycles the skb between
// them. Hop.Fingerprint hashes what NAT and routing keep (IP ID or flow
// label, lengths, protocol, TCP seq/ack/flags/window, UDP length, ICMP
// type/code/seq, ARP fields, fragment offset and id) and never addresses,
// ports, ICMP ids, TTLs or checksums. Without an skb key, two different
// packets in flight at once with equal fingerprints and one equal end (no
// IP ID, as in IPv6 or IPv4 with DF and a zero ID) are joined: a known
// limitation; so is a packet whose both ends NAT rewrites between two
// hooks, which is split.
//
// Where an entry lives: a packet's hooks nearly always run on the CPU that
// sent it (a veth hands a packet to its peer through that CPU's backlog,
// the bridge forwards at once), so its entry sits in that CPU's slots
// (flights: a per-CPU array, direct-mapped by key, up to 1024 slots; no
// lock, no hash table). A packet that wants a slot another packet still on
// its way holds moves that one to the shared table (seen_pkts: an LRU hash
// with per-CPU lists, Options.InFlightPerCPU entries per CPU), which the
// hooks look in next. A packet that changed CPUs (a qdisc, RPS) is looked
// for in the other CPUs' slots where every packet comes known: the ingress
// of a veth whose peer is traced. Past its last traced hook (what each
// attached interface is comes from netlink at Attach: hookflags.go) a
// packet's entry stays in its slot marked ended, where the receiving
// stack's drop or a route on from a bridge that passed the packet up still
// finds it at once, and leaves the shared table. So the shared table holds
// packets in flight only, and one is evicted only when more are in flight
// than it holds; that shows at the ingress of a veth whose peer is traced
// (every packet there came through the peer's egress hook) and is counted
// in Loss.Evicted.
//
// A Drop comes from the kfree_skb tracepoint for a packet in the CPU's
// slots or the shared table (by skb address, or by fingerprint on older
// kernels, with the same fingerprint, time and ends rules) and carries the
// same PacketID; ReasonName is the kernel's enum skb_drop_reason name from its
// BTF without the SKB_DROP_REASON_ prefix.
//
// # Filtering
//
// Options.Filter (a tracer/filter program: tcpdump-style host, net, port,
// portrange, src/dst, tcp/udp/icmp/icmp6/arp/ip/ip6, and/or/not) is set
// before load as constants in .rodata: up to 16 clauses ORed, of up to 8
// predicates ANDed, evaluated with bounded loops on the packet as decoded at
// the hook. A packet that matches at its first hook gets an entry in the
// table, and its later hooks follow it without evaluating again: a
// matching packet is followed through NAT even when its rewritten addresses
// no longer match. A rejected packet writes nothing (no event, no table
// entry), so its later hooks evaluate the filter again, and one that NAT
// rewrites to match is traced from the hook where it matches. The filter
// runs right after the decode: a rejected packet is looked up (it may be a
// traced one NAT rewrote out of the filter) only if a hook traced a packet
// within the join window; otherwise it costs the decode and the filter, and
// the drop tracepoint returns at once. Drops are reported only for packets
// that matched.
//
// # Delivery
//
// Each CPU writes its events to its own ring buffers: with one ring for all,
// CPUs tracing at once waited for each other's lock and producer position,
// and a hop cost twice what it did on one CPU. A CPU's hooks write to its
// fast ring first: 256 KiB of an array the reader maps, in the ring
// buffer's record format, where a hook writes its record and then the
// producer position, without the kernel ring buffer's lock and locked
// instructions (a fifth of what a traced hook cost). Behind it are a small
// kernel ring (256 KiB; the drops, which can interrupt a hook, go there)
// and the large one for what those cannot hold: a ring's writes walk all
// of it, and those of a large one keep missing the caches. With the skb key, a hop whose headers are those
// of its packet's previous hop goes as a compact event, and the reader
// fills the headers in (headers.go); with a snaplen up to 128, when its
// bytes are those of the previous hop too (hashed in the hook), and the
// reader fills them in as well. The reader merges the rings
// in time order (ring.go): a look takes every ring's producer position,
// then hands out the events below them oldest first, decoded in place;
// ReadBatch decodes as many as are there, up to a batch, under one lock
// (the capture reads 64 at a time: a third less of the reader's time an
// event than one ReadInto each).
// The kernel submits without waking the reader, which
// costs a few hundred ns per event instead of microseconds; the reader
// drains the rings when they have data and looks again every
// Options.DrainInterval (10ms) when it was empty, so latency stays in the
// tens of milliseconds. It waits on a Go timer, not in a blocking system
// call, which would wake the runtime's monitor thread thousands of times a
// second. After 200ms of empty ring the reader sleeps and
// sets reader_asleep, and the kernel wakes it with the next event, on any
// CPU's ring: an idle
// tracer does not wake at all (idle.go). Events the full ring cannot take are counted per
// CPU and reported by Loss, exactly.
//
// # Netns identity on older kernels
//
// Hop.NetnsIno comes from skb->dev where the skb key is available. Without
// it the hop programs are loaded once per netns with the netns inode as a
// load-time constant, sharing all maps, since user space knows where it
// attached.
package tracer
