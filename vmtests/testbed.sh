#!/bin/sh
# testbed.sh: make this machine (Debian 12, root) ready to build, test and demo
# hoptrace. Idempotent: installs only what is missing, starts dockerd only if
# no daemon answers, imports busybox:local only if it is absent.
#
#   vmtests/testbed.sh            packages + dockerd + busybox:local
#   vmtests/testbed.sh --generate also clang-19/llvm-19/libbpf-dev for `make generate`
#   vmtests/testbed.sh --vm       also qemu and cpio for `make vmtest`
#
# Nothing is downloaded beyond Debian's package mirror.
set -eu

want_generate=0
want_vm=0
for a in "$@"; do
	case "$a" in
	--generate) want_generate=1 ;;
	--vm) want_vm=1 ;;
	*) echo "testbed.sh: unknown option $a" >&2; exit 2 ;;
	esac
done

if [ "$(id -u)" != 0 ]; then
	echo "testbed.sh: must run as root (try: sudo $0 $*)" >&2
	exit 1
fi

pkgs="docker.io busybox-static iproute2 iperf3 iptables nftables tshark file ethtool kmod prometheus"
[ $want_generate = 1 ] && pkgs="$pkgs clang-19 llvm-19 libbpf-dev linux-libc-dev"
[ $want_vm = 1 ] && pkgs="$pkgs qemu-system-x86 cpio"

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "testbed: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Debian's docker.io client; some machines carry a newer client in /usr/local/bin
# that talks to the same socket, either works.
docker_ready() { docker info >/dev/null 2>&1; }

if ! docker_ready; then
	echo "testbed: starting dockerd (log: /var/log/hoptrace-dockerd.log)"
	# setsid: dockerd must outlive this script and not get its signals.
	setsid dockerd >/var/log/hoptrace-dockerd.log 2>&1 < /dev/null &
	i=0
	until docker_ready; do
		i=$((i + 1))
		if [ $i -gt 120 ]; then
			echo "testbed: dockerd did not answer within 60s; see /var/log/hoptrace-dockerd.log" >&2
			tail -20 /var/log/hoptrace-dockerd.log >&2 || true
			exit 1
		fi
		sleep 0.5
	done
fi

if ! docker image inspect busybox:local >/dev/null 2>&1; then
	echo "testbed: importing busybox:local from busybox-static"
	d=$(mktemp -d)
	mkdir -p "$d/bin" "$d/tmp" "$d/www"
	cp /bin/busybox "$d/bin/busybox"
	for c in sh ping nc wget httpd sleep ip cat echo ls ps kill true false seq head yes dd hostname; do
		ln -s busybox "$d/bin/$c"
	done
	echo "hello from hoptrace demo" >"$d/www/index.html"
	tar -C "$d" -c . | docker import - busybox:local >/dev/null
	rm -rf "$d"
fi
echo "testbed: ready (docker $(docker version -f '{{.Server.Version}}' 2>/dev/null), busybox:local)"
