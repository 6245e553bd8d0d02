#!/bin/sh
# The byte layouts in docs/ctl-protocol.md and docs/cbt-format.md agree
# with include/nbdsnap/ctl.h and cbt-format.h: each table of
# "| OFFSET | SIZE | `field` | ..." rows that follows a line naming
# `struct nbdsnap_...` must list that struct's fields at their offsetof
# and sizeof, back to back and complete (the sizes add up to the
# struct's sizeof), and every "`struct nbdsnap_...` (N bytes" says the
# struct's real size.  The offsets and sizes come from the compiler.
# CC, srcdir and top_srcdir come from TESTS_ENVIRONMENT.
set -e

srcdir=${srcdir:-.}
top_srcdir=${top_srcdir:-$srcdir/..}
CC=${CC:-cc}
tmp=$(mktemp -d /tmp/test-formats-doc.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# One line per documented field: FILE STRUCT FIELD OFFSET SIZE; offsets
# are made relative to the table's first row (the reply table of
# ctl-protocol.md counts from the start of the message).  Also a line
# per stated size: FILE STRUCT - - BYTES.
for md in ctl-protocol.md cbt-format.md; do
  awk -v file="$md" '
    function cell(i) { return c[i] }
    /^\|/ {
      n = split($0, c, "|")
      for (i = 1; i <= n; i++) gsub(/^ +| +$/, "", c[i])
      if (c[2] ~ /^[0-9]+$/ && c[3] ~ /^[0-9]+$/ && c[4] ~ /^`[a-z0-9_]+`$/ &&
          st != "") {
        if (!intable) { base = c[2]; intable = 1 }
        f = c[4]; gsub(/`/, "", f)
        print file, st, f, c[2] - base, c[3]
      }
      named = 0
      next
    }
    { intable = 0 }
    /^[ \t]*$/ { named = 0; next }
    /^[*-] / { named = 0 }
    /`struct nbdsnap_[a-z_]+`/ {
      # A table belongs to the first struct named in the paragraph (or
      # list item) before it ("`struct a` (8 bytes), then count x
      # `struct b`").
      if (!named && match($0, /`struct nbdsnap_[a-z_]+`/)) {
        st = substr($0, RSTART + 8, RLENGTH - 9)
        named = 1
      }
      t = $0
      while (match(t, /`struct nbdsnap_[a-z_]+` \([0-9]+ bytes/)) {
        u = substr(t, RSTART, RLENGTH)
        name = u; sub(/^`struct /, "", name); sub(/`.*/, "", name)
        bytes = u; sub(/.*\(/, "", bytes); sub(/ bytes/, "", bytes)
        print file, name, "-", "-", bytes
        t = substr(t, RSTART + RLENGTH)
      }
    }
  ' "$srcdir/$md"
done > "$tmp/doc"

[ -s "$tmp/doc" ] || { echo "$0: FAIL: no layout tables found"; exit 1; }

# The same facts from the compiler.
{
  echo '#include <stddef.h>'
  echo '#include <stdio.h>'
  echo '#include <nbdsnap/ctl.h>'
  echo '#include <nbdsnap/cbt-format.h>'
  echo 'int main (void) {'
  awk '{
    if ($3 == "-")
      printf "  printf (\"%%s %%s - - %%zu\\n\", \"%s\", \"%s\", sizeof (struct %s));\n", $1, $2, $2
    else
      printf "  printf (\"%%s %%s %%s %%zu %%zu\\n\", \"%s\", \"%s\", \"%s\", offsetof (struct %s, %s), sizeof (((struct %s *) 0)->%s));\n", $1, $2, $3, $2, $3, $2, $3
  }' "$tmp/doc"
  # Completeness: the documented sizes of each struct add up to sizeof.
  awk '$3 != "-" { sum[$1 " " $2] += $5 }
       END { for (k in sum) { split(k, a, " ");
         printf "  if (%d != sizeof (struct %s)) printf (\"%s %s: the table covers %d of %%zu bytes\\n\", sizeof (struct %s));\n", sum[k], a[2], a[1], a[2], sum[k], a[2] } }' "$tmp/doc"
  echo '  return 0;'
  echo '}'
} > "$tmp/check.c"

$CC -I"$top_srcdir/include" -o "$tmp/check" "$tmp/check.c"
"$tmp/check" > "$tmp/code"

status=0
if ! diff -u "$tmp/doc" "$tmp/code" > "$tmp/diff"; then
  echo "$0: FAIL: the documented layouts differ from the headers (- docs, + code):"
  cat "$tmp/diff"
  status=1
fi
echo "$0: checked $(grep -vc ' - - ' "$tmp/doc") fields and $(grep -c ' - - ' "$tmp/doc") sizes"
exit $status
