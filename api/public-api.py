#!/usr/bin/env python3
"""Prints credlock's public API, one line per item: kind, path, and a signature where easy.

Reads the rustdoc JSON of the library (built with every feature; `#[doc(hidden)]` items,
such as the `internal` module, are left out by rustdoc, as they are out of the promise).
"""
import json, sys

doc = json.load(open(sys.argv[1]))
index = doc["index"]
root = doc["root"]
lines = set()


def ty(t):
    """A type, written roughly as Rust writes it."""
    if t is None:
        return "()"
    if not isinstance(t, dict):
        return str(t)
    (k, v), = t.items()
    if k == "resolved_path":
        args = v.get("args")
        inner = ""
        if args and "angle_bracketed" in args:
            parts = []
            for a in args["angle_bracketed"]["args"]:
                if "type" in a:
                    parts.append(ty(a["type"]))
                elif "lifetime" in a:
                    parts.append(a["lifetime"])
                elif "const" in a:
                    parts.append(str(a["const"].get("expr", "_")))
            for c in args["angle_bracketed"].get("constraints", []):
                b = c.get("binding", {})
                if "equality" in b and "type" in b["equality"]:
                    parts.append(f'{c["name"]} = {ty(b["equality"]["type"])}')
            if parts:
                inner = "<" + ", ".join(parts) + ">"
        elif args and "parenthesized" in args:
            p = args["parenthesized"]
            inner = "(" + ", ".join(ty(i) for i in p["inputs"]) + ")" + (f' -> {ty(p["output"])}' if p.get("output") else "")
        return v["path"].split("::")[-1] + inner
    if k == "primitive":
        return v
    if k == "generic":
        return v
    if k == "borrowed_ref":
        return "&" + (v["lifetime"] + " " if v.get("lifetime") else "") + ("mut " if v["is_mutable"] else "") + ty(v["type"])
    if k == "slice":
        return f"[{ty(v)}]"
    if k == "array":
        return f"[{ty(v['type'])}; {v['len']}]"
    if k == "tuple":
        return "(" + ", ".join(ty(x) for x in v) + ")"
    if k == "impl_trait":
        return "impl " + " + ".join(bound(b) for b in v)
    if k == "dyn_trait":
        return "dyn " + " + ".join(ty({"resolved_path": t["trait"]}) for t in v["traits"])
    if k == "qualified_path":
        return f"<{ty(v['self_type'])}>::{v['name']}"
    if k == "raw_pointer":
        return ("*mut " if v["is_mutable"] else "*const ") + ty(v["type"])
    return k


def bound(b):
    if "trait_bound" in b:
        return ty({"resolved_path": b["trait_bound"]["trait"]})
    if "outlives" in b:
        return b["outlives"]
    return "?"


def fn_sig(name, f):
    sig = f["sig"]
    ins = []
    for pname, t in sig["inputs"]:
        ins.append("self" if pname == "self" and ty(t) == "Self" else ("&self" if pname == "self" and ty(t) == "&Self" else f"{pname}: {ty(t)}"))
    out = f" -> {ty(sig['output'])}" if sig.get("output") else ""
    return f"fn {name}({', '.join(ins)}){out}"


def visit(item_id, path, seen):
    if item_id in seen:
        return
    seen = seen | {item_id}
    item = index.get(str(item_id)) or index.get(item_id)
    if item is None:
        return
    (kind, inner), = item["inner"].items()
    name = item.get("name")
    if kind == "use":
        target = inner.get("id")
        if target is not None:
            visit(target, path if inner.get("is_glob") else path[:-0], seen) if inner.get("is_glob") else visit_named(target, path + [inner["name"]], seen)
        return
    visit_named(item_id, path + [name], seen)


def visit_named(item_id, path, seen):
    item = index.get(str(item_id))
    if item is None:
        lines.add(f"extern {'::'.join(path)}")
        return
    (kind, inner), = item["inner"].items()
    p = "::".join(path)
    attrs = " ".join(a if isinstance(a, str) else json.dumps(a) for a in item.get("attrs", []))
    ne = " #[non_exhaustive]" if "non_exhaustive" in attrs else ""
    if kind == "module":
        lines.add(f"mod {p}")
        for child in inner["items"]:
            c = index.get(str(child))
            if c and c.get("visibility") == "public" or (c and "use" in c["inner"]):
                visit(child, path, set())
    elif kind == "function":
        lines.add(f"{p}: {fn_sig(path[-1], inner)}")
    elif kind in ("struct", "enum", "union", "trait"):
        lines.add(f"{kind} {p}{ne}")
        if kind == "struct":
            k = inner["kind"]
            fields = k.get("plain", {}).get("fields", []) if isinstance(k, dict) else []
            for fid in fields:
                f = index.get(str(fid))
                if f and f.get("visibility") == "public":
                    lines.add(f"field {p}::{f['name']}: {ty(f['inner']['struct_field'])}")
        if kind == "enum":
            for vid in inner["variants"]:
                v = index[str(vid)]
                lines.add(f"variant {p}::{v['name']}")
                vk = v["inner"]["variant"]["kind"]
                if isinstance(vk, dict) and "struct" in vk:
                    for fid in vk["struct"]["fields"]:
                        f = index[str(fid)]
                        lines.add(f"field {p}::{v['name']}::{f['name']}: {ty(f['inner']['struct_field'])}")
                elif isinstance(vk, dict) and "tuple" in vk:
                    lines.add(f"field {p}::{v['name']}(" + ", ".join(ty(index[str(fid)]["inner"]["struct_field"]) if fid is not None else "_" for fid in vk["tuple"]) + ")")
        if kind == "trait":
            for mid in inner["items"]:
                m = index[str(mid)]
                if "function" in m["inner"]:
                    lines.add(f"{p}::{m['name']}: {fn_sig(m['name'], m['inner']['function'])}")
        for iid in inner.get("impls", []):
            imp = index[str(iid)]["inner"]["impl"]
            if imp.get("is_synthetic") or imp.get("blanket_impl"):
                continue
            if imp.get("trait"):
                # rustdoc also lists `impl From<ThisType> for Other` among ThisType's impls.
                for_id = (imp.get("for") or {}).get("resolved_path", {}).get("id")
                if for_id is not None and str(for_id) != str(item_id):
                    continue
                lines.add(f"impl {ty({'resolved_path': imp['trait']})} for {p}")
                continue
            for mid in imp["items"]:
                m = index[str(mid)]
                if m.get("visibility") != "public":
                    continue
                if "function" in m["inner"]:
                    lines.add(f"{p}::{m['name']}: {fn_sig(m['name'], m['inner']['function'])}")
                elif "assoc_const" in m["inner"] or "constant" in m["inner"]:
                    lines.add(f"const {p}::{m['name']}")
    elif kind == "constant":
        lines.add(f"const {p}: {ty(inner['type'])}")
    elif kind == "static":
        lines.add(f"static {p}: {ty(inner['type'])}")
    elif kind == "type_alias":
        lines.add(f"type {p}")
    else:
        lines.add(f"{kind} {p}")


visit_named(root, ["credlock"], set())
print("\n".join(sorted(lines)))
