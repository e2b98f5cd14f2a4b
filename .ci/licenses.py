"""Reads `cargo metadata` JSON on stdin; fails when a crate's licence is not allowed."""
import collections
import json
import re
import sys

ALLOW = {"MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause", "BSD-3-Clause",
         "ISC", "Zlib", "Unicode-3.0", "Unicode-DFS-2016", "Unlicense", "BSL-1.0", "0BSD",
         "CDLA-Permissive-2.0", "MPL-2.0"}


def ok(expr):
    """Evaluates an SPDX expression: true when some choice uses only allowed licences."""
    e = re.sub(r"\s+WITH\s+", "_WITH_", expr.replace("/", " OR "))
    out = []
    for tok in re.findall(r"\(|\)|[^\s()]+", e):
        if tok in ("(", ")"):
            out.append(tok)
        elif tok in ("OR", "AND"):
            out.append(f" {tok.lower()} ")
        else:
            out.append(str(tok.replace("_WITH_", " WITH ") in ALLOW))
    return eval("".join(out))  # only True/False/and/or/parentheses at this point


def main():
    m = json.load(sys.stdin)
    bad, versions = [], collections.defaultdict(set)
    for p in m["packages"]:
        versions[p["name"]].add(p["version"])
        lic = p.get("license")
        if not lic or not ok(lic):
            bad.append(f"{p['name']} {p['version']}: {lic or 'no licence field'}")
    dups = sorted(f"{n} ({', '.join(sorted(v))})" for n, v in versions.items() if len(v) > 1)
    print(f"{len(m['packages'])} crates checked against the licence allow-list")
    if dups:
        print(f"{len(dups)} crates in several versions: " + "; ".join(dups))
    if bad:
        print("not allowed:\n  " + "\n  ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    assert ok("MIT OR Apache-2.0") and ok("(MIT OR Apache-2.0) AND Unicode-3.0")
    assert not ok("GPL-3.0") and ok("MIT OR LGPL-2.1-or-later") and not ok("MIT AND GPL-2.0")
    main()
