#!/usr/bin/env bash
# scripts/<method>/<protocol>.sh and run_all.sh are links to this file: tools/protocols.py reads both from $0.
exec python "$(dirname "$(readlink -f "$0")")/../tools/protocols.py" "$0" "$@"
