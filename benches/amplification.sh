#!/usr/bin/env bash
# Amplification shapes (issue 25): one NetworkPolicy admitting a namespace's N pods (with
# scattered addresses, as a real cluster's are) on P listed ports, or on P short endPort
# ranges; `nftpol compile --node node-1` time, peak RSS and element lines, as they grow.
#
#   benches/amplification.sh [NFTPOL_BINARY]     (default target/release/nftpol)
#
# Needs python3 (the generator) and GNU time (/usr/bin/time). Prints one row per shape.
set -euo pipefail
bin=${1:-target/release/nftpol}
dir=$(mktemp -d /tmp/nftpol-amp.XXXXXX)
trap 'rm -rf "$dir"' EXIT

gen() { # pods ports [endport-width]
  python3 - "$@" <<'PY'
import sys, json
pods, ports = int(sys.argv[1]), int(sys.argv[2])
width = int(sys.argv[3]) if len(sys.argv) > 3 else 0
items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}}]
for i in range(pods):
    ip = f"10.{1 + i // 30000}.{(i // 120) % 250}.{(i % 120) * 2 + 1}"
    items.append({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": "t", "labels": {"app": "a"}},
        "spec": {"nodeName": "node-1" if i < 20 else "node-2",
                 "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
if width:
    pl = [{"protocol": "TCP", "port": 1000 + 100 * j, "endPort": 1000 + 100 * j + width}
          for j in range(ports)]
else:
    pl = [{"protocol": "TCP", "port": 1000 + 2 * j} for j in range(ports)]
items.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "big", "namespace": "t"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"podSelector": {}}], "ports": pl}]}})
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
PY
}

printf '%-28s %10s %12s %12s\n' shape seconds peak_MiB script_lines
for shape in "100 1000" "200 2000" "400 2000" "200 500 40" "1000 5000" "5000 5000"; do
  # shellcheck disable=SC2086
  gen $shape >"$dir/in.json"
  /usr/bin/time -f '%e %M' -o "$dir/time" "$bin" compile --node node-1 "$dir/in.json" >"$dir/out.nft"
  read -r secs kb <"$dir/time"
  set -- $shape
  label="$1 pods x $2 ports${3:+ (endPort +$3)}"
  printf '%-28s %10s %12s %12s\n' "$label" "$secs" "$((kb / 1024))" "$(wc -l <"$dir/out.nft")"
done
