/* Minimal kernel types for CO-RE: only the fields hoptrace reads. The
 * loader relocates every access against the running kernel's BTF, so
 * these layouts need not match any kernel; names must. This replaces a
 * multi-megabyte vmlinux.h. */
#pragma once

#include <linux/types.h>

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
	struct {
		struct net *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned int len;
	struct net_device *dev;
	unsigned char *head;
	__u16 mac_header;
	__u16 network_header;
	__be16 protocol;
} __attribute__((preserve_access_index));
