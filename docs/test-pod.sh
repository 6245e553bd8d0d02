#!/bin/sh
# Check every POD source in docs/ with podchecker: an error or a
# warning fails the test.
set -e

srcdir=${srcdir:-.}
PODCHECKER=${PODCHECKER:-podchecker}

if ! command -v "$PODCHECKER" >/dev/null 2>&1; then
  if [ "${NBDSNAP_NO_SKIP:-}" = 1 ]; then
    echo "$0: FAIL: cannot run: podchecker is not installed (NBDSNAP_NO_SKIP=1)" >&2
    exit 99
  fi
  echo "$0: SKIP: podchecker is not installed"
  exit 77
fi

status=0
for pod in "$srcdir"/*.pod; do
  out=$("$PODCHECKER" -warnings -warnings "$pod" 2>&1) || status=1
  printf '%s\n' "$out"
  if printf '%s\n' "$out" | grep -q -e '\*\*\* ERROR' -e '\*\*\* WARNING'; then
    status=1
  fi
done
exit $status
