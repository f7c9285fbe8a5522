package main

import (
	"net/netip"
	"reflect"
)

// fields lists every field of event.Packet once, in the order of the
// recording format: field i has bit 1<<i in a packet's field mask, and the
// fields that differ from the reference packet follow the mask in this
// order. The order is the format, so a new field goes at the end.
var fields = []field{
	{"Layers", uvarint16, "layers"},
	{"SrcMAC", mac, ""},
	{"DstMAC", mac, ""},
	{"EtherType", uvarint16, "ethertype"},
	{"VLAN", uvarint16, "vlan"},
	{"Src", addr, ""},
	{"Dst", addr, ""},
	{"Proto", byte1, ""},
	{"IPID", delta32, ""},
	{"TTL", byte1, ""},
	{"SrcPort", uvarint16, "port"},
	{"DstPort", uvarint16, "port"},
	{"TCPFlags", byte1, ""},
	{"Seq", delta32, ""},
	{"Ack", delta32, ""},
	{"ICMPType", byte1, ""},
	{"ICMPCode", byte1, ""},
	{"ICMPID", uvarint16, "icmp id"},
	{"ICMPSeq", delta16, "icmp seq"},
	{"ARPOp", uvarint16, "arp op"},
	{"ARPSenderMAC", mac, ""},
	{"ARPTargetMAC", mac, ""},
}

// field is one field of event.Packet and its coding.
type field struct {
	name   string // the event.Packet field
	coding coding
	what   string // the field in range errors (uvarint16 and delta16)
}

// A coding is how a field's value is written when it differs from the
// reference's, as Go code for the encoder (an *enc e) and the decoder (a
// *dec d), each with p the packet and ref the reference. In the code,
// %[1]s is the field's name, %[2]s its Go type and %[3]q its name in
// errors.
type coding struct {
	name     string
	fits     func(reflect.Type) bool
	enc, dec string
}

var (
	byte1 = coding{"byte", kind(reflect.Uint8),
		"e.u8(p.%[1]s)",
		"p.%[1]s = d.u8()"}
	uvarint16 = coding{"uvarint16", kind(reflect.Uint16),
		"e.uvarint(uint64(p.%[1]s))",
		"p.%[1]s = %[2]s(d.uint(16, %[3]q))"}
	mac = coding{"mac", is[[6]byte](),
		"e.b = append(e.b, p.%[1]s[:]...)",
		"d.mac(&p.%[1]s)"}
	addr = coding{"addr", is[netip.Addr](),
		"e.addr(p.%[1]s)",
		"p.%[1]s = d.addr()"}
	// delta32 and delta16 are signed distances from the reference's value,
	// small for the counters of consecutive packets (IP ID, TCP sequence).
	delta32 = coding{"delta32", kind(reflect.Uint32),
		"e.delta32(p.%[1]s, ref.%[1]s)",
		"p.%[1]s = d.delta32(ref.%[1]s)"}
	delta16 = coding{"delta16", kind(reflect.Uint16),
		"e.delta16(p.%[1]s, ref.%[1]s)",
		"p.%[1]s = d.delta16(ref.%[1]s, %[3]q)"}
)

func kind(k reflect.Kind) func(reflect.Type) bool {
	return func(t reflect.Type) bool { return t.Kind() == k }
}

func is[T any]() func(reflect.Type) bool {
	return func(t reflect.Type) bool { return t == reflect.TypeFor[T]() }
}
