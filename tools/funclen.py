#!/usr/bin/env python3
"""Function lengths of the C sources, by brace counting (the architecture issue's measure).

usage: tools/funclen.py [-n N] [DIR_OR_FILE ...]   (default: autograd models data train cli util)

Prints the N longest function definitions (lines from the signature's line to the closing brace)
and the line count of each folder. Strings, character literals and comments are skipped when
counting braces; a definition is a top-level `{` whose preceding text ends in `)`, not a
struct/enum/initialiser.
"""
import os
import re
import sys


def strip(src):
    """Source with comments, strings and char literals blanked (newlines kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in src[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(c + " " * (j - i - 1) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    src = strip(open(path, encoding="utf-8", errors="replace").read())
    depth, start, res = 0, None, []
    for m in re.finditer(r"[{}]", src):
        if m.group() == "{":
            if depth == 0:
                head = src[:m.start()].rstrip()
                if head.endswith(")") and not re.search(r"=\s*$", head):
                    # the signature starts after the previous top-level ; or } or preprocessor line
                    prev = max(head.rfind(";"), head.rfind("}"), head.rfind("\n#"))
                    sig = head[prev + 1:]
                    lead = len(sig) - len(sig.lstrip())
                    start = src.count("\n", 0, prev + 1 + lead) + 1
                    name = re.search(r"(\w+)\s*\([^()]*(\([^()]*\)[^()]*)*\)\s*$", head)
                    start_name = name.group(1) if name else "?"
                else:
                    start = None
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start is not None:
                end = src.count("\n", 0, m.start()) + 1
                res.append((end - start + 1, path, start, start_name))
                start = None
    return res


def main():
    args = sys.argv[1:]
    top = 15
    if args[:1] == ["-n"]:
        top, args = int(args[1]), args[2:]
    roots = args or ["autograd", "models", "data", "train", "cli", "util"]
    files, lines = [], {}
    for r in roots:
        if os.path.isfile(r):
            files.append(r)
            continue
        for dp, _, fs in os.walk(r):
            for f in sorted(fs):
                if f.endswith((".c", ".h")):
                    p = os.path.join(dp, f)
                    files.append(p)
                    lines[r] = lines.get(r, 0) + sum(1 for _ in open(p, encoding="utf-8", errors="replace"))
    fn = sorted((x for p in files if p.endswith(".c") for x in functions(p)), reverse=True)
    for n, p, s, name in fn[:top]:
        print(f"{n:5d}  {p}:{s}  {name}")
    print(f"functions over 120 lines: {sum(1 for x in fn if x[0] > 120)} of {len(fn)}")
    for r, n in lines.items():
        print(f"lines {r}/: {n}")


if __name__ == "__main__":
    main()
