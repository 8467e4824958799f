#!/usr/bin/env bash
# Checks that every publishable crate of the workspace is self-contained, as `cargo package`
# would ship it (ember-cuda is left out until its kernels/ move into the crate):
#   - `cargo package --list` succeeds and the manifest has a description and a licence;
#   - every path dependency also carries a version (cargo package needs one);
#   - every include_str!/include_bytes! in a shipped file names a file inside the crate that is
#     itself shipped, and a shipped file that reaches outside the crate at run time ("../")
#     prints a `SKIPPED:` line when the file is absent;
#   - the `ember` facade library pulls none of the CLI's dependencies (clap, indicatif,
#     plotters) and does not depend on serde_json itself.
# Usage: scripts/package-check.sh   (from anywhere; exits non-zero on the first crate that fails)
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=(ember-ops ember-comm ember-core ember-cpu ember-nn ember ember-cli)
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT

for c in "${CRATES[@]}"; do
    if ! cargo package --list --allow-dirty --quiet -p "$c" >"$lists/$c" 2>"$lists/$c.err"; then
        echo "package-check: cargo package --list -p $c failed:" >&2
        cat "$lists/$c.err" >&2
        exit 1
    fi
done

cargo metadata --no-deps --format-version 1 >"$lists/metadata.json"

python3 - "$lists" "${CRATES[@]}" <<'EOF'
import json, os, re, sys

lists, crates = sys.argv[1], sys.argv[2:]
meta = json.load(open(os.path.join(lists, "metadata.json")))
packages = {p["name"]: p for p in meta["packages"]}
failures = []
include = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)')
runtime_up = re.compile(r'"(?:\.\./)+[^"]*"')

for name in crates:
    pkg = packages[name]
    root = os.path.dirname(pkg["manifest_path"])
    shipped = {line.strip() for line in open(os.path.join(lists, name)) if line.strip()}
    for field in ("description", "license"):
        if not pkg.get(field):
            failures.append(f"{name}: Cargo.toml has no {field}")
    for dep in pkg["dependencies"]:
        if dep.get("path") and dep["kind"] in (None, "build") and dep["req"] == "*":
            failures.append(f"{name}: path dependency {dep['name']} has no version")
    for rel in sorted(shipped):
        if not rel.endswith(".rs"):
            continue
        path = os.path.join(root, rel)
        text = open(path, encoding="utf-8").read()
        code = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        for target in include.findall(code):
            full = os.path.normpath(os.path.join(os.path.dirname(path), target))
            inside = os.path.relpath(full, root)
            if inside.startswith(".."):
                failures.append(f"{name}: {rel} embeds {target}, outside the crate")
            elif inside not in shipped:
                failures.append(f"{name}: {rel} embeds {inside}, which is not packaged")
        for target in runtime_up.findall(include.sub("", code)):
            if target.strip('"').startswith("../") and "SKIPPED:" not in text:
                failures.append(
                    f"{name}: {rel} reads {target} outside the crate without a SKIPPED: line"
                )
    print(f"package-check: {name}: {len(shipped)} files")

if failures:
    print("\n".join(f"package-check: FAIL {f}" for f in failures), file=sys.stderr)
    sys.exit(1)
EOF

# The facade must not pull the CLI's dependencies into a user's build.
tree=$(cargo tree -p ember -e normal --prefix none)
if bad=$(grep -E '^(clap|indicatif|plotters) ' <<<"$tree"); then
    echo "package-check: FAIL the ember library pulls CLI dependencies:" >&2
    echo "$bad" >&2
    exit 1
fi
if cargo tree -p ember -e normal --depth 1 --prefix none | grep -q '^serde_json '; then
    echo "package-check: FAIL the ember library depends on serde_json directly" >&2
    exit 1
fi
echo "package-check: ok (${CRATES[*]}; ember pulls no clap, indicatif or plotters)"
