#!/bin/sh
# The man pages agree with the code, both ways:
# - every command of `nbdsnapctl --help` has a =head2 in nbdsnapctl.pod,
#   every option in each command's --help appears there as B<--OPTION>,
#   and every =head2 under COMMANDS is a real command;
# - every option of `nbdsnapd --help` has an =item in nbdsnapd.pod's
#   OPTIONS, and every such =item is a real option;
# - every key accepted by daemon/conf.c (main_keys and plugin_keys) has
#   an =item in nbdsnapd.conf.pod and a commented line in the example
#   system/nbdsnapd.conf.in, and every =item key there is accepted;
# - every method, property and signal of daemon/org.nbdsnap.Manager1.xml
#   has a comment in the XML and is named in nbdsnapd.pod.
# NBDSNAPD, NBDSNAPCTL (built binaries), srcdir and top_srcdir come
# from TESTS_ENVIRONMENT.
set -e

: "${NBDSNAPD:?NBDSNAPD is not set: run the tests with make check}"
: "${NBDSNAPCTL:?NBDSNAPCTL is not set: run the tests with make check}"
srcdir=${srcdir:-.}
top_srcdir=${top_srcdir:-$srcdir/..}
ctl_pod=$srcdir/nbdsnapctl.pod
d_pod=$srcdir/nbdsnapd.pod
conf_pod=$srcdir/nbdsnapd.conf.pod
conf_c=$top_srcdir/daemon/conf.c
conf_example=$top_srcdir/system/nbdsnapd.conf.in
xml=$top_srcdir/daemon/org.nbdsnap.Manager1.xml

status=0
fail ()
{
  echo "$0: FAIL: $*"
  status=1
}

# Lines of a POD section: from "=head1 NAME" to the next =head1.
pod_section ()
{
  awk -v s="=head1 $2" '$0 == s { f = 1; next } /^=head1 / { f = 0 } f' "$1"
}

# Long options in the "Application Options:" part of a GOption --help.
help_options ()
{
  awk '/^Application Options:/ { f = 1; next } /^$/ { f = 0 } f' |
    grep -o -e '^ *-[A-Za-z], --[a-z][a-z-]*' -e '^ *--[a-z][a-z-]*' |
    sed 's/.*--/--/'
}

# nbdsnapctl: the commands.
"$NBDSNAPCTL" --help > ctl-help.out
commands=$(awk -F '  +' '/^Commands/ { f = 1; next } f && /^$/ { exit }
                         f { print $2 }' ctl-help.out)
[ -n "$commands" ] || fail "no commands in nbdsnapctl --help"
n=0
pod_section "$ctl_pod" COMMANDS > ctl-commands.pod
for c in $(echo "$commands" | tr ' ' '_'); do
  c=$(echo "$c" | tr '_' ' ')
  n=$((n + 1))
  grep -q -E "^=head2 $c( |\$)" ctl-commands.pod ||
    fail "nbdsnapctl.pod: command '$c' has no '=head2 $c' under COMMANDS"
  # shellcheck disable=SC2086
  "$NBDSNAPCTL" $c --help > ctl-cmd-help.out
  for o in $(help_options < ctl-cmd-help.out); do
    grep -q -F "B<$o>" ctl-commands.pod ||
      fail "nbdsnapctl.pod: option $o of '$c' is not documented (B<$o>)"
  done
done
echo "nbdsnapctl: $n commands checked"
sed -n 's/^=head2 //p' ctl-commands.pod | while read -r w1 w2 rest; do
  if [ "$w1" = version ] || [ "$w1" = backup ]; then
    c=$w1
  else
    c="$w1 $w2"
  fi
  echo "$commands" | grep -q -x -F "$c" || {
    echo "$0: FAIL: nbdsnapctl.pod documents '$c', which nbdsnapctl" \
         "--help does not list"
    exit 1
  }
done || status=1
for o in --socket --json --help --version; do
  pod_section "$ctl_pod" OPTIONS | grep -q "^=item .*B<$o>" ||
    fail "nbdsnapctl.pod: common option $o has no =item under OPTIONS"
done

# nbdsnapd: the options.
"$NBDSNAPD" --help > d-help.out
options=$(help_options < d-help.out)
[ -n "$options" ] || fail "no options in nbdsnapd --help"
pod_section "$d_pod" OPTIONS > d-options.pod
n=0
for o in $options --help; do
  n=$((n + 1))
  grep -q "^=item .*B<$o>" d-options.pod ||
    fail "nbdsnapd.pod: option $o has no =item under OPTIONS"
done
echo "nbdsnapd: $n options checked"
for o in $(grep '^=item' d-options.pod | grep -o 'B<--[a-z-]*>' |
           sed 's/B<\(.*\)>/\1/' | sort -u); do
  echo "$options --help" | tr ' ' '\n' | grep -q -x -F -e "$o" ||
    fail "nbdsnapd.pod documents $o, which nbdsnapd --help does not list"
done

# nbdsnapd.conf: the keys.
main_keys=$(sed -n '/main_keys\[\] = {/,/};/p' "$conf_c" |
            grep -o '"[a-z-]*"' | tr -d '"')
plugin_keys=$(sed -n '/plugin_keys\[\] = {/,/};/p' "$conf_c" |
              grep -o '"[a-z-]*"' | tr -d '"')
[ "$(echo "$main_keys" | wc -w)" -gt 10 ] ||
  fail "cannot read main_keys from $conf_c"
[ "$(echo "$plugin_keys" | wc -w)" -gt 3 ] ||
  fail "cannot read plugin_keys from $conf_c"
pod_section "$conf_pod" 'THE [nbdsnapd] GROUP' > conf-main.pod
pod_section "$conf_pod" 'THE [plugin] GROUP' > conf-plugin.pod
awk '/^\[nbdsnapd\]/ { f = 1; next } /^\[/ { f = 0 } f' "$conf_example" \
  > conf-example-main
awk '/^\[plugin\]/ { f = 1; next } /^\[/ { f = 0 } f' "$conf_example" \
  > conf-example-plugin
n=0
check_keys ()                   # check_keys KEYS POD EXAMPLE GROUP
{
  for k in $1; do
    n=$((n + 1))
    grep -q "^=item B<$k> = " "$2" ||
      fail "nbdsnapd.conf.pod: key '$k' has no '=item B<$k> = ...' in [$4]"
    grep -q "^#$k = " "$3" ||
      fail "system/nbdsnapd.conf.in: key '$k' has no '#$k = ...' line in [$4]"
  done
  for k in $(sed -n 's/^=item B<\([a-z-]*\)> = .*/\1/p' "$2"); do
    echo "$1" | tr ' ' '\n' | grep -q -x -F "$k" ||
      fail "nbdsnapd.conf.pod documents '$k' in [$4], which conf.c refuses"
  done
  for k in $(sed -n 's/^#\([a-z-]*\) = .*/\1/p' "$3"); do
    echo "$1" | tr ' ' '\n' | grep -q -x -F "$k" ||
      fail "system/nbdsnapd.conf.in shows '$k' in [$4], which conf.c refuses"
  done
}
check_keys "$main_keys" conf-main.pod conf-example-main nbdsnapd
check_keys "$plugin_keys" conf-plugin.pod conf-example-plugin plugin
echo "nbdsnapd.conf: $n keys checked"

# The D-Bus interface: documented in the XML, named in nbdsnapd.pod.
awk '
  /^[ \t]*$/ { next }
  /<(method|property|signal) name=/ {
    match ($0, /name="[A-Za-z]*"/)
    name = substr ($0, RSTART + 6, RLENGTH - 7)
    if (prev !~ /-->[ \t]*$/)
      print "undocumented " name
    else
      print "ok " name
  }
  { prev = $0 }
' "$xml" > xml-members
[ "$(grep -c '^ok ' xml-members)" -gt 20 ] ||
  fail "cannot read the members of $xml"
n=0
while read -r state name; do
  n=$((n + 1))
  [ "$state" = ok ] ||
    fail "$xml: $name has no comment before it"
  pod_section "$d_pod" API | grep -q "B<$name>" ||
    fail "nbdsnapd.pod: D-Bus member $name is not named under API"
done < xml-members
echo "org.nbdsnap.Manager1: $n members checked"

rm -f ctl-help.out ctl-cmd-help.out ctl-commands.pod d-help.out \
  d-options.pod conf-main.pod conf-plugin.pod conf-example-main \
  conf-example-plugin xml-members
exit $status
