#!/usr/bin/env bash
# scripts/<method>/<protocol>.sh and run_all.sh are links to this file; tools/grid.py runs the jobs of the script
# named by $0 (method = its folder, protocol = its name; tools/protocols.py lists them).
exec python "$(dirname "$(readlink -f "$0")")/../tools/grid.py" --script "$0" "$@"
