#!/usr/bin/python3
"""layers.py SRCDIR [ALLOWLIST]: checks the #include "..." graph of SRCDIR.

Rules:
  include  every quoted include names a file under SRCDIR by its path from
           SRCDIR ("core/engine.h"), in a layer folder;
  layer    a file includes headers of its own layer or of lower ones only
           (base < expr < store < net < core < stages < cli);
  cycle    the graph of modules has no cycle. A module is a .c and its .h
           (core/dag.c, core/dag.h); files named after it with a suffix
           (store/state_runs.c, store/state_int.h) belong to it; a header
           without a .c of its own belongs to the one .c of its folder that
           includes it first (core/spec.h: core/config.c), else it is a
           module alone.
  allow    every allowlist entry still names an arrow that exists and breaks
           a rule, so the list can only shrink.

ALLOWLIST lines (blank lines and lines starting with # are skipped):
  dir/file.h -> dir/file.h  # why it is there and what removes it
      a file arrow the layer rule lets through;
  dir/module -> dir/module  # ...
      a module arrow left out of the graph before the cycle check.
The comment is required.

Writes one line per case, "PASS<TAB>description" or "FAIL<TAB>description",
followed by "DIAG<TAB>text" lines explaining a failure; exits 1 if any case
failed, 2 on bad usage.
"""
import os
import re
import sys

LAYERS = ["base", "expr", "store", "net", "core", "stages", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')

results = []


def case(ok, desc, diags=()):
    results.append(("PASS" if ok else "FAIL", desc, list(diags)))


def read_allowlist(path):
    """Returns (file_arrows, module_arrows, errors); arrows map
    (a, b) -> line number."""
    files, modules, errors = {}, {}, []
    if not path:
        return files, modules, errors
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            m = re.match(r"^(\S+)\s*->\s*(\S+)\s*#\s*(\S.*)$", text)
            if not m:
                errors.append("%s:%d: expected 'a -> b  # what removes it': %s"
                              % (path, n, text))
                continue
            a, b = m.group(1), m.group(2)
            is_file = [x.endswith((".c", ".h")) for x in (a, b)]
            if is_file[0] != is_file[1]:
                errors.append("%s:%d: '%s -> %s' mixes a file and a module"
                              % (path, n, a, b))
            elif is_file[0]:
                files[(a, b)] = n
            else:
                modules[(a, b)] = n
    return files, modules, errors


def scan(src):
    """Returns the sorted list of source files (paths from src) and their
    quoted includes: {file: [(line, target)]}."""
    files = []
    for root, dirs, names in os.walk(src):
        dirs.sort()
        for name in sorted(names):
            if name.endswith((".c", ".h")):
                files.append(os.path.relpath(os.path.join(root, name), src))
    includes = {}
    for path in files:
        with open(os.path.join(src, path), encoding="utf-8", errors="replace") as f:
            includes[path] = [(n, m.group(1)) for n, line in enumerate(f, 1)
                              for m in [INCLUDE.match(line)] if m]
    return files, includes


def layer_of(path):
    parts = path.split("/")
    return parts[0] if len(parts) > 1 and parts[0] in RANK else None


def modules_of(files, includes):
    """Maps every file to its module name (dir/stem, see the rules)."""
    present = set(files)

    def base(path):
        d, name = os.path.split(path)
        stem = os.path.splitext(name)[0]
        if "_" in stem:
            prefix = stem.split("_", 1)[0]
            if any(os.path.join(d, prefix + ext) in present for ext in (".c", ".h")):
                stem = prefix
        return os.path.join(d, stem)

    module = {p: base(p) for p in files}
    with_c = {module[p] for p in files if p.endswith(".c")}
    for h in files:
        if not h.endswith(".h") or module[h] in with_c:
            continue
        d = os.path.dirname(h)
        owners = {module[c] for c in files
                  if c.endswith(".c") and os.path.dirname(c) == d
                  and includes[c] and includes[c][0][1] == h}
        if len(owners) == 1:
            module[h] = owners.pop()
    return module


def components(graph):
    """The strongly connected components of more than one node, as sets.
    Reachability is enough at this size: v and w share a component when
    each reaches the other."""
    nodes = set(graph) | {w for ws in graph.values() for w in ws}
    reach = {}
    for v in nodes:
        seen, todo = set(), [v]
        while todo:
            for w in graph.get(todo.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        reach[v] = seen
    comps, done = [], set()
    for v in sorted(nodes):
        if v in done or v not in reach[v]:
            continue
        comp = {w for w in reach[v] if v in reach[w]} | {v}
        done |= comp
        comps.append(comp)
    return comps


def find_cycles(graph):
    """One cycle (a list of modules, first == last) per strongly connected
    component: the shortest way from its least node back to itself."""
    cycles = []
    for comp in components(graph):
        start = min(comp)
        prev, queue, last = {start: None}, [start], None
        while queue and last is None:
            nxt = []
            for v in queue:
                for w in sorted(graph.get(v, ())):
                    if w == start:
                        last = v
                        break
                    if w in comp and w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if last is not None:
                    break
            queue = nxt
        path, v = [], last
        while v is not None:
            path.append(v)
            v = prev[v]
        cycles.append(path[::-1] + [start])
    return sorted(cycles)


def main(argv):
    if len(argv) not in (2, 3) or not os.path.isdir(argv[1]):
        sys.stderr.write("usage: layers.py SRCDIR [ALLOWLIST]\n")
        return 2
    src = argv[1].rstrip("/") or "/"
    allow_files, allow_modules, allow_errors = read_allowlist(argv[2] if len(argv) == 3 else None)
    case(not allow_errors, "the allowlist reads", allow_errors)

    files, includes = scan(src)
    present = set(files)
    module = modules_of(files, includes)

    # include: every target is a file of the tree, named from src.
    bad = []
    for path in files:
        if layer_of(path) is None:
            bad.append("%s: not in a layer folder (%s)" % (path, " < ".join(LAYERS)))
        for n, target in includes[path]:
            if target not in present:
                local = os.path.normpath(os.path.join(os.path.dirname(path), target))
                why = ("name it by its path from src/: \"%s\"" % local
                       if local in present else "no such file under src/")
                bad.append("%s:%d: #include \"%s\": %s" % (path, n, target, why))
    case(not bad, "every quoted include names a file of a layer by its path from src/", bad)

    # layer: no arrow up, except the allowlisted ones.
    used_file_allow = set()
    for path in files:
        mine = layer_of(path)
        if mine is None:
            continue
        up = []
        for n, target in includes[path]:
            theirs = layer_of(target) if target in present else None
            if theirs is None or RANK[theirs] <= RANK[mine]:
                continue
            if (path, target) in allow_files:
                used_file_allow.add((path, target))
                continue
            up.append("%s:%d: #include \"%s\": %s is above %s (%s)"
                      % (path, n, target, theirs, mine, " < ".join(LAYERS)))
        case(not up, "%s includes its own layer or lower only" % path, up)

    # cycle: the module graph without the allowlisted module arrows.
    graph, why, full = {}, {}, {}
    for path in files:
        for n, target in includes[path]:
            if target not in present:
                continue
            a, b = module[path], module[target]
            if a == b:
                continue
            full.setdefault(a, set()).add(b)
            why.setdefault((a, b), "%s:%d includes %s" % (path, n, target))
            if (a, b) not in allow_modules:
                graph.setdefault(a, set()).add(b)
    diags = []
    for cyc in find_cycles(graph):
        diags.append("cycle: " + " -> ".join(cyc))
        for a, b in zip(cyc, cyc[1:]):
            diags.append("  %s -> %s: %s" % (a, b, why[(a, b)]))
    case(not diags, "the module graph has no cycle", diags)

    # allow: each entry still allows something.
    comp_of = {v: i for i, comp in enumerate(components(full)) for v in comp}
    for (a, b), n in sorted(allow_files.items(), key=lambda kv: kv[1]):
        ok = (a, b) in used_file_allow
        case(ok, "allowlisted arrow %s -> %s is still there" % (a, b),
             [] if ok else ["allowlist line %d: %s no longer includes %s above its layer: "
                            "remove the entry" % (n, a, b)])
    for (a, b), n in sorted(allow_modules.items(), key=lambda kv: kv[1]):
        ok = b in full.get(a, ()) and a in comp_of and comp_of[a] == comp_of.get(b)
        case(ok, "allowlisted module arrow %s -> %s is still on a cycle" % (a, b),
             [] if ok else ["allowlist line %d: module %s no longer depends on %s in a "
                            "cycle: remove the entry" % (n, a, b)])

    failed = False
    for status, desc, ds in results:
        failed |= status == "FAIL"
        print("%s\t%s" % (status, desc))
        for d in ds:
            print("DIAG\t%s" % d)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
