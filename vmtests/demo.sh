#!/bin/sh
# demo.sh: the main job on a fresh machine. Starts its own demo containers (a
# web server and a client on docker0, an api server on a user-defined bridge
# network that the client also joins), makes traffic among them only, and runs
# `hoptrace trace` so you see real journeys. Removes everything it made at the end.
#
#   vmtests/demo.sh [path/to/hoptrace] [extra trace flags...]
set -eu
bin=${1:-./hoptrace}
[ $# -gt 0 ] && shift
duration=${DEMO_DURATION:-12s}
net=hoptrace-demo
web=ht-demo-web client=ht-demo-client api=ht-demo-api
pids=""
stop=$(mktemp -u /tmp/hoptrace-demo-stop.XXXXXX)

# The traffic loop must end before its containers go: killing it would leave
# its docker exec of the moment running, and any exec that starts after
# 'docker rm' fails with "cannot exec in a stopped state". So it is asked to
# stop (the flag file) and waited for; each exec is bounded by timeout.
cleanup() {
	touch "$stop"
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	rm -f "$stop"
	docker rm -f $web $client $api >/dev/null 2>&1 || true
	docker network rm $net >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

cleanup
echo "demo: starting containers $web, $client (docker0) and $api (network $net)"
docker network create $net >/dev/null
docker run -d --name $web busybox:local httpd -f -p 8080 -h /www >/dev/null
docker run -d --name $api --network $net busybox:local httpd -f -p 9090 -h /www >/dev/null
docker run -d --name $client busybox:local sleep 3600 >/dev/null
docker network connect $net $client
web_ip=$(docker inspect -f '{{.NetworkSettings.Networks.bridge.IPAddress}}' $web)
api_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" $api)

echo "demo: the bridge topology"
"$bin" links
echo

# Traffic only among the demo containers: HTTP and ping client -> web on
# docker0, client -> api on $net, until cleanup asks the loop to stop.
(
	sleep 2
	while [ ! -e "$stop" ]; do
		timeout 5 docker exec $client wget -q -O /dev/null "http://$web_ip:8080/" || true
		[ -e "$stop" ] && break
		timeout 5 docker exec $client ping -c 1 -W 1 "$api_ip" >/dev/null || true
		[ -e "$stop" ] && break
		timeout 5 docker exec $client wget -q -O /dev/null "http://$api_ip:9090/" || true
		sleep 0.3
	done
) &
pids="$pids $!"

echo "demo: hoptrace trace --duration $duration (client -> web over docker0, client -> api over $net)"
"$bin" trace --duration "$duration" "$@"
