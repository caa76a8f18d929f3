#!/usr/bin/env bash
# Every example config passes `sidecored --check-config` against the machine
# its NAME.topology describes, and prints exactly the plan in NAME.plan.
# TAP. Usage: check_examples.sh SIDECORED SOURCE_ROOT
set -u
bin=$1
cd "$2" || exit 1
confs=(examples/*.conf)
echo "1..${#confs[@]}"
n=0
for conf in "${confs[@]}"; do
  n=$((n + 1))
  base=${conf%.conf}
  got=$("$bin" --check-config "$conf" --topology "$(cat "$base.topology")" 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "not ok $n - $conf: --check-config exited $rc"
    printf '%s\n' "$got" | sed 's/^/# /'
  elif ! diff -u "$base.plan" <(printf '%s\n' "$got") > /tmp/sidecore-examples-diff.$$; then
    echo "not ok $n - $conf: the plan differs from $base.plan"
    sed 's/^/# /' /tmp/sidecore-examples-diff.$$
  else
    echo "ok $n - $conf"
  fi
  rm -f /tmp/sidecore-examples-diff.$$
done
