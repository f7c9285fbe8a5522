#!/bin/bash
# overhead.sh: whole-system overhead of hoptrace, measured side by side in one
# run. Two throwaway containers on docker0; iperf3 (run from the host inside the
# containers' network namespaces) measures TCP throughput and ping the RTT,
# alternating rounds without and with `hoptrace trace` attached (printing every
# journey, and with a filter that matches nothing: the kernel-side cost). Prints the
# medians and the with/without ratios. Traffic stays between the two containers.
#
#   vmtests/overhead.sh [path/to/hoptrace] [rounds] [seconds-per-run]
set -euo pipefail
bin=$(readlink -f "${1:-./hoptrace}")
rounds=${2:-5}
secs=${3:-4}
srv=ht-ovh-server cli=ht-ovh-client
tmp=$(mktemp -d)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	docker rm -f $srv $cli >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

docker rm -f $srv $cli >/dev/null 2>&1 || true
docker run -d --name $srv busybox:local sleep 3600 >/dev/null
docker run -d --name $cli busybox:local sleep 3600 >/dev/null
srv_pid=$(docker inspect -f '{{.State.Pid}}' $srv)
cli_pid=$(docker inspect -f '{{.State.Pid}}' $cli)
srv_ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' $srv)

nsenter -t "$srv_pid" -n iperf3 -s >/dev/null 2>&1 &
pids+=($!)
sleep 0.5

measure() { # $1 = label; appends "label gbit rtt_us" to $tmp/results
	local gbit rtt
	gbit=$(nsenter -t "$cli_pid" -n iperf3 -c "$srv_ip" -t "$secs" -J 2>/dev/null |
		awk -F: '/"bits_per_second"/ {v=$2} END {gsub(/[ ,]/, "", v); printf "%.2f", v/1e9}')
	rtt=$(docker exec $cli ping -c 20 -i 0.05 "$srv_ip" 2>/dev/null |
		awk -F/ '/min\/avg\/max/ {printf "%.0f", $4*1000}')
	echo "$1 $gbit $rtt" >>"$tmp/results"
	echo "  $1: ${gbit} Gbit/s, ping avg ${rtt} us"
}

# with_hoptrace LABEL [filter words...]: measure while `hoptrace trace` runs.
with_hoptrace() {
	local label=$1 hp journeys lost
	shift
	rm -f "$tmp/ready"
	"$bin" trace -o json --ready-file "$tmp/ready" "$@" >"$tmp/trace.json" 2>"$tmp/trace.err" &
	hp=$!
	pids+=($hp)
	for _ in $(seq 1 100); do [ -e "$tmp/ready" ] && break; sleep 0.1; done
	[ -e "$tmp/ready" ] || { echo "hoptrace did not become ready:"; cat "$tmp/trace.err"; exit 1; }
	measure "$label"
	kill -INT $hp
	wait $hp || true
	journeys=$(grep -c '"type":"journey"' "$tmp/trace.json" || true)
	lost=$(tail -1 "$tmp/trace.json" | grep -o '"lost":[0-9]*' | cut -d: -f2)
	echo "    hoptrace printed $journeys journeys, events lost ${lost:-?}"
}

for r in $(seq 1 "$rounds"); do
	echo "round $r/$rounds"
	measure without
	# Every packet traced, assembled and printed as JSON.
	with_hoptrace with
	# Hooks attached, but a filter that matches none of this traffic: the
	# kernel-side cost alone (decode + filter, no events).
	with_hoptrace filtered udp port 9
done

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }
col() { awk -v l="$1" -v c="$2" '$1==l{print $c}' "$tmp/results" | median; }
tw=$(col without 2) th=$(col with 2) tf=$(col filtered 2)
rw=$(col without 3) rh=$(col with 3) rf=$(col filtered 3)
echo
echo "median over $rounds rounds     without   with hoptrace (ratio)   hooks, filter matches nothing (ratio)"
awk -v a="$tw" -v b="$th" -v c="$tf" 'BEGIN {printf "TCP throughput (Gbit/s)  %7.2f   %7.2f (%5.3f)          %7.2f (%5.3f)\n", a, b, b/a, c, c/a}'
awk -v a="$rw" -v b="$rh" -v c="$rf" 'BEGIN {printf "ping RTT avg (us)        %7.0f   %7.0f (%5.3f)          %7.0f (%5.3f)\n", a, b, b/a, c, c/a}'
