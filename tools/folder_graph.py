#!/usr/bin/env python3
"""Which folder of Sources/DDPM uses which other folder's declarations (types, top-level
functions and constants), found by grepping: a rough dependency graph, and its cycles.
Usage: folder_graph.py [Sources/DDPM]"""
import re, sys, pathlib, itertools

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "Sources/DDPM")
files = sorted(root.rglob("*.swift"))
folder = lambda f: f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else "."

def strip(text):  # comments and string literals out
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)

decl = re.compile(r"^(?:(?:public|internal|final|@\w+(?:\([^)]*\))?)\s+)*"  # private ones stay in their file
                  r"(?:struct|class|enum|protocol|typealias|actor|func|let|var)\s+([A-Za-z_]\w*)", re.M)
nested = re.compile(r"\b(?:struct|class|enum|protocol|typealias)\s+([A-Z]\w*)")
owner, texts = {}, {}
for f in files:
    t = strip(f.read_text())
    texts[f] = t
    for name in decl.findall(t) + nested.findall(t):
        if len(name) > 2:
            owner.setdefault(name, set()).add(folder(f))
# A name declared in several folders is ambiguous: skip it.
owner = {n: next(iter(fs)) for n, fs in owner.items() if len(fs) == 1}
edges = {}
for f, t in texts.items():
    a = folder(f)
    # A name after a dot is a member (x.decode, X.Config), one before a colon an argument label
    # (decode: ...), and a generic parameter (<Config: ...>) is the file's own.
    # The name a declaration introduces (func decode, let x) is no use either.
    generic = set(re.findall(r"<\s*([A-Z]\w*)\s*[:,>]", t))
    t = re.sub(r"\b(func|var|let|case|struct|class|enum|protocol|typealias|actor)\s+\w+", r"\1", t)
    for name in set(re.findall(r"(?<![.\w])[A-Za-z_]\w*\b(?!\s*:(?!:))", t)) - generic:
        b = owner.get(name)
        if b and b != a:
            edges.setdefault((a, b), set()).add(name)
for (a, b), names in sorted(edges.items()):
    print(f"{a:11} -> {b:11} {', '.join(sorted(names))}")
graph = {}
for a, b in edges: graph.setdefault(a, set()).add(b)
# Strongly connected components (Tarjan): each with more than one folder is a cycle.
index, low, stack, on, comps, n = {}, {}, [], set(), [], itertools.count()
def visit(v):
    index[v] = low[v] = next(n); stack.append(v); on.add(v)
    for w in graph.get(v, ()):
        if w not in index: visit(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        comps.append(comp)
for v in sorted({x for e in edges for x in e}):
    if v not in index: visit(v)
cycles = [sorted(c) for c in comps if len(c) > 1]
print("cycles:", "; ".join(" ".join(c) for c in cycles) if cycles else "none")
sys.exit(1 if cycles else 0)
