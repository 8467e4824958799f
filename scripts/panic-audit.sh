#!/usr/bin/env bash
# Panic audit of ember's library code: lists every site that can panic on its own, and fails
# when one is not reviewed in docs/panic-audit.txt.
#
# Sites (outside #[cfg(test)] modules, test-only files and comments):
#   - in every crate under crates/*/src: .unwrap(), .expect(, panic!, unreachable!, todo!,
#     unimplemented!, unwrap_unchecked;
#   - in the crates whose public API takes shapes, axes, indices and data from callers
#     (ember-core, ember-nn, ember-ops, ember): slice and Vec indexing `name[...]`, which panics
#     when the index is out of range. The kernel crates (ember-cpu, ember-cuda) are not scanned
#     for indexing: their public kernels check slice lengths up front and return Err, and their
#     inner loops index within those lengths; see docs/panic-audit.txt.
#
# docs/panic-audit.txt holds one reviewed site per line: FILE<TAB>CODE<TAB>VERDICT, where CODE is
# the trimmed source line (several identical lines in one file share an entry) and VERDICT
# either justifies the site ("OK: <which check establishes the invariant, where>") or marks it
# "FIX: <how caller input reaches it>". Keying on the line's text, not its number, keeps the
# list valid while the code around a site moves.
#
# Usage: scripts/panic-audit.sh            check; exit 1 on unreviewed sites or bad entries
#        scripts/panic-audit.sh --list     print every site found (FILE<TAB>CODE)
#        scripts/panic-audit.sh --summary  sites per crate, and how many are FIX
set -euo pipefail
cd "$(dirname "$0")/.."
allow=docs/panic-audit.txt

# Prints FILE<TAB>CODE for the sites of one kind: `panics` or `indexing`.
scan() {
    local kind=$1
    shift
    find "$@" -name '*.rs' ! -name 'tests.rs' ! -name 'test_*.rs' | LC_ALL=C sort |
        xargs awk -v kind="$kind" '
        FNR == 1 { skip = 0; pending = 0 }
        {
            line = $0
            # A #[cfg(test)] module at the top level (rustfmt style) runs to the next "}" in
            # column 0.
            if (skip) { if (line ~ /^}/) skip = 0; next }
            if (line ~ /^#\[cfg\(test\)\]/) { pending = 1; next }
            if (pending) { pending = 0; if (line ~ /^(pub )?mod [a-z_0-9]+ *\{/) { skip = 1; next } }
            t = line; sub(/^[ \t]+/, "", t); sub(/[ \t]+$/, "", t)
            if (t ~ /^\/\// || t ~ /^#\[/) next
            code = t; sub(/[ \t]*\/\/.*$/, "", code)
            gsub(/"([^"\\]|\\.)*"/, "\"\"", code)
            if (kind == "panics") {
                if (code ~ /\.unwrap\(\)|\.expect\(|panic!|unreachable!|todo!|unimplemented!|unwrap_unchecked/)
                    print FILENAME "\t" t
            } else if (code ~ /[A-Za-z0-9_)\]]\[[^\]]+\]/) {
                print FILENAME "\t" t
            }
        }'
}

sites() {
    {
        scan panics crates/*/src
        scan indexing crates/ember-core/src crates/ember-nn/src crates/ember-ops/src crates/ember/src
    } | LC_ALL=C sort -u
}

case "${1:-}" in
--list)
    sites
    exit 0
    ;;
--summary)
    grep -v '^#' "$allow" | grep -v '^$' | awk -F'\t' '
        { split($1, p, "/"); c = p[2]; n[c]++; if ($3 ~ /^FIX:/) f[c]++ }
        END { for (c in n) printf "%-12s %4d sites, %3d FIX\n", c, n[c], f[c] + 0 }' | sort
    exit 0
    ;;
"") ;;
*)
    echo "usage: $0 [--list|--summary]" >&2
    exit 2
    ;;
esac

status=0
# Entries must have three fields and a verdict that starts with OK: or FIX:.
bad=$(grep -v '^#' "$allow" | grep -v '^$' | awk -F'\t' 'NF != 3 || $3 !~ /^(OK|FIX): ./' || true)
if [ -n "$bad" ]; then
    echo "panic-audit: malformed entries in $allow (need FILE<TAB>CODE<TAB>OK: or FIX: reason):"
    printf '%s\n' "$bad" | sed 's/^/  /'
    status=1
fi
reviewed=$(grep -v '^#' "$allow" | grep -v '^$' | cut -f1,2 | LC_ALL=C sort -u)
new=$(LC_ALL=C comm -23 <(sites) <(printf '%s\n' "$reviewed"))
if [ -n "$new" ]; then
    echo "panic-audit: sites not reviewed in $allow (add each with OK: <invariant> or FIX: <why>):"
    printf '%s\n' "$new" | sed 's/^/  /'
    status=1
fi
stale=$(LC_ALL=C comm -13 <(sites) <(printf '%s\n' "$reviewed"))
if [ -n "$stale" ]; then
    echo "panic-audit: note: entries whose line is gone (remove them from $allow):"
    printf '%s\n' "$stale" | sed 's/^/  /'
fi
total=$(sites | wc -l)
fix=$(grep -c $'\tFIX:' "$allow" || true)
echo "panic-audit: $total sites, $fix marked FIX"
exit $status
