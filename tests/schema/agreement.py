#!/usr/bin/python3
"""Checks that the stage kinds' option tables (KINDS, the output of
`pipectl kinds --json`), the JSON Schema (SCHEMA) and the man page (MAN)
agree. Prints one line per role and document, "ok<TAB>description" or
"not ok<TAB>description", each failure followed by "#   problem" lines
(agreement.sh turns them into TAP cases).

usage: agreement.py KINDS SCHEMA MAN

Schema, per kind: the options of a kind whose options are nested under its
selector (load: {sqlite: {...}}) are exactly the properties of the schema
object under role.selector; a kind whose options sit beside its selector
(fetch: {url, ...}) has each option among the role's properties, and the
role's properties are exactly the options and selectors of its kinds.
Each option has the JSON type its table type implies (an enum the same
words), a default the schema states is the table's, and the required keys
of a nested kind are the schema object's "required".

Man page, per kind: the section of the role (.SS fetch) lists, at its top
level, a kind's options (flat kinds) or the entry of its selector, whose
.RS block lists the options (nested kinds), each as a ".TP" entry
"\\fBkey\\fR: ..."; an option with a default says "default \\fBX\\fR" in its
entry's first line; and nothing is listed there that no table has.
"""
import json
import re
import sys

kinds_path, schema_path, man_path = sys.argv[1:4]
kinds = json.load(open(kinds_path))
schema = json.load(open(schema_path))
man = open(man_path).read().split("\n")


def report(okay, desc, problems):
    print("%s\t%s" % ("ok" if okay else "not ok", desc))
    for p in problems:
        print("#   " + p)


def resolve(node):
    while isinstance(node, dict) and "$ref" in node and len(
            [k for k in node if k not in ("description", "default")]) == 1:
        ref = node["$ref"]
        assert ref.startswith("#/$defs/"), ref
        target = dict(schema["$defs"][ref[len("#/$defs/"):]])
        for k in ("description", "default"):
            if k in node:
                target[k] = node[k]
        node = target
    return node


def json_types(node):
    """The JSON types a schema node admits (best effort, enough here)."""
    node = resolve(node)
    if node is True or node is None:
        return {"string", "integer", "number", "boolean", "object", "array", "null"}
    out = set()
    if "$ref" in node:
        out |= json_types({"$ref": node["$ref"]})
    t = node.get("type")
    if isinstance(t, str):
        out.add(t)
    elif isinstance(t, list):
        out |= set(t)
    for v in node.get("enum", []) + ([node["const"]] if "const" in node else []):
        out.add({str: "string", bool: "boolean", int: "integer", float: "number",
                 type(None): "null"}[type(v)])
    for key in ("anyOf", "oneOf"):
        for sub in node.get(key, []):
            out |= json_types(sub)
    if "number" in out:
        out.add("integer")
    return out


# The JSON types each table type must admit (and, for scalars, all it may).
TYPE_NEEDS = {
    "string": {"string"},
    "template": {"string"},
    "jq": {"string"},
    "integer": {"integer"},
    "boolean": {"boolean"},
    "duration": {"string"},
    "size": {"string"},
    "enum": {"string"},
    "string list": {"string", "array"},
    "template list": {"string", "array"},
}


def check_option(o, prop, where, problems):
    prop_r = resolve(prop)
    have = json_types(prop)
    want = TYPE_NEEDS.get(o["type"], {"object"})
    if not want <= have:
        problems.append("%s.%s: table type %s wants JSON %s, the schema admits %s"
                        % (where, o["key"], o["type"], sorted(want), sorted(have)))
    if o["type"] in ("boolean", "integer") and have - {"integer", "boolean", "number"}:
        problems.append("%s.%s: table type %s, the schema also admits %s"
                        % (where, o["key"], o["type"], sorted(have)))
    if "words" in o:
        enum = prop_r.get("enum")
        if enum is None or sorted(enum) != sorted(o["words"]):
            problems.append("%s.%s: table words %s, schema enum %s"
                            % (where, o["key"], o["words"], enum))
    if "default" in prop_r and o["inherit"] and "default" not in o:
        pass  # inherited when absent: the docs state the value it inherits
    elif "default" in prop_r:
        sd = prop_r["default"]
        sd = json.dumps(sd) if isinstance(sd, bool) else str(sd)
        if o.get("default") != sd:
            problems.append("%s.%s: schema default %r, table default %r"
                            % (where, o["key"], sd, o.get("default")))
    elif "default" in o:
        problems.append("%s.%s: table default %r, the schema states none"
                        % (where, o["key"], o["default"]))


stage = resolve(schema["$defs"]["stage"])
roles = {}
for k in kinds:
    roles.setdefault(k["role"], []).append(k)

# ---- the schema
for role, ks in roles.items():
    problems = []
    if role not in stage["properties"]:
        report(False, "schema: role %s" % role, ["no property %r in $defs.stage" % role])
        continue
    rnode = resolve(stage["properties"][role])
    rprops = rnode.get("properties", {})
    expected = set()
    for k in ks:
        where = k["kind"]
        if k.get("nested"):
            expected.add(k["selector"])
            if k["selector"] not in rprops:
                problems.append("%s: no property %r under %s" % (where, k["selector"], role))
                continue
            knode = resolve(rprops[k["selector"]])
            kprops = knode.get("properties", {})
            keys = [o["key"] for o in k["options"]]
            for extra in sorted(set(kprops) - set(keys)):
                problems.append("%s: the schema has %r, no table has" % (where, extra))
            for o in k["options"]:
                if o["key"] not in kprops:
                    problems.append("%s: option %r is not in the schema" % (where, o["key"]))
                else:
                    check_option(o, kprops[o["key"]], where, problems)
            req = sorted(o["key"] for o in k["options"] if o["required"])
            if sorted(knode.get("required", [])) != req:
                problems.append("%s: table requires %s, the schema %s"
                                % (where, req, sorted(knode.get("required", []))))
        else:
            if k.get("selector"):
                expected.add(k["selector"])
            for o in k["options"]:
                expected.add(o["key"])
                if o["key"] not in rprops:
                    problems.append("%s: option %r is not in the schema" % (where, o["key"]))
                else:
                    check_option(o, rprops[o["key"]], where, problems)
    for extra in sorted(set(rprops) - expected):
        problems.append("%s: the schema has %r, no table has" % (role, extra))
    report(not problems, "schema: the options of %s agree with the tables (%s)"
           % (role, ", ".join(k["kind"] for k in ks)), problems)


# ---- the man page
def unman(s):
    s = re.sub(r"\\f[BIRP]", "", s)
    return s.replace("\\&", "").replace("\\-", "-").replace("\\(en", "-").replace("\\(dq", '"')


def section(role):
    """Lines of ".SS role" up to the next .SS/.SH."""
    out, inside = [], False
    for line in man:
        if line.startswith((".SS", ".SH")):
            if inside:
                break
            inside = line.strip() == ".SS " + role
            continue
        if inside:
            out.append(line)
    return out


def entries(lines):
    """The .TP entries "\\fBkey\\fR: ..." at the top level of lines, as
    {key: (heading, body lines)} (depth counted with .RS/.RE)."""
    out, depth, i = {}, 0, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".RS"):
            depth += 1
        elif line.startswith(".RE"):
            depth -= 1
        elif line.startswith(".TP") and depth == 0 and i + 1 < len(lines):
            m = re.match(r"\\fB([a-z_]+)\\fR:", lines[i + 1])
            if m:
                body, j, d = [], i + 2, 0
                while j < len(lines):
                    lj = lines[j]
                    if lj.startswith(".RS"):
                        d += 1
                    elif lj.startswith(".RE"):
                        if d == 0:
                            break
                        d -= 1
                    elif d == 0 and lj.startswith((".TP", ".SS", ".SH")):
                        break
                    body.append(lj)
                    j += 1
                out[m.group(1)] = (lines[i + 1], body)
        i += 1
    return out


def block(lines):
    """The lines inside the first .RS ... .RE of lines (its nested entries)."""
    out, d = [], 0
    for line in lines:
        if line.startswith(".RS"):
            d += 1
            if d == 1:
                continue
        elif line.startswith(".RE"):
            d -= 1
            if d == 0:
                break
        if d >= 1:
            out.append(line)
    return out


def check_man_option(o, heading, where, problems):
    h = unman(heading)
    if "default" in o and not re.search(r"\(default %s[;,)]" % re.escape(o["default"]), h):
        problems.append("%s.%s: the man page's entry does not say (default %s): %s"
                        % (where, o["key"], o["default"], h))


for role, ks in roles.items():
    problems = []
    top = entries(section(role))
    expected = set()
    if not top:
        problems.append("no .SS %s section with option entries" % role)
    for k in ks:
        where = k["kind"]
        if k.get("nested"):
            expected.add(k["selector"])
            if k["selector"] not in top:
                problems.append("%s: no entry for %r in .SS %s" % (where, k["selector"], role))
                continue
            inner = entries(block(top[k["selector"]][1]))
            keys = [o["key"] for o in k["options"]]
            for extra in sorted(set(inner) - set(keys)):
                problems.append("%s: the man page has %r, no table has" % (where, extra))
            for o in k["options"]:
                if o["key"] not in inner:
                    problems.append("%s: option %r is not documented" % (where, o["key"]))
                else:
                    check_man_option(o, inner[o["key"]][0], where, problems)
        else:
            if k.get("selector"):
                expected.add(k["selector"])
            for o in k["options"]:
                expected.add(o["key"])
                if o["key"] not in top:
                    problems.append("%s: option %r is not documented" % (where, o["key"]))
                else:
                    check_man_option(o, top[o["key"]][0], where, problems)
    for extra in sorted(set(top) - expected):
        problems.append("%s: the man page has %r, no table has" % (role, extra))
    report(not problems, "man page: .SS %s documents the options of %s" % (role, ", ".join(
        k["kind"] for k in ks)), problems)
