#!/usr/bin/env bash
# Open MPI "rsh agent" for tools/faults/two_hosts.sh: runs the command in the network namespace
# that stands for the host (10.77.0.1 -> gtA, 10.77.0.2 -> gtB) instead of logging in by ssh.
# Open MPI calls it as: netns_rsh.sh [ssh-style options] HOST COMMAND...
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
case $host in
  10.77.0.1) ns=gtA ;;
  10.77.0.2) ns=gtB ;;
  *) echo "netns_rsh: unknown host $host" >&2; exit 255 ;;
esac
exec ip netns exec "$ns" /bin/sh -c "$*"
