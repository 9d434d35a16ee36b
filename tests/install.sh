#!/usr/bin/env bash
# `make install` into a temporary prefix, then what a user of the installed library does: build
# examples/finetune.c with `pkg-config --cflags --libs gemmatrain` (shared library) and with
# `--static`, run both on configs/tiny.yaml, and run the installed CLI. Prints one result line;
# exit status non-zero on any failure. Run from the repository root (`make test-install`).
set -euo pipefail
tmp=$(mktemp -d /tmp/gemmatrain-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "test-install: FAILED: $*" >&2; exit 1; }
make -s -j2 install PREFIX="$prefix" >"$tmp/install.log" 2>&1 || { tail -20 "$tmp/install.log"; fail "make install"; }
for f in bin/gemmatrain lib/libgemmatrain.a lib/libgemmatrain.so lib/libgemmatrain.so.0 \
         lib/pkgconfig/gemmatrain.pc include/gemmatrain/train/trainer.h include/gemmatrain/models/io/gguf.h; do
  [ -e "$prefix/$f" ] || fail "$f is not installed"
done
[ ! -e "$prefix/include/gemmatrain/data/tok_internal.h" ] || fail "a private header was installed"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
[ "$(pkg-config --modversion gemmatrain)" = "$(sed -n 's/^VERSION *:= *//p' Makefile)" ] || fail "pkg-config version"
# shared: only the installed headers and library (the repository's own folders are not on the path)
cc -std=c11 -Wall -Wextra -Werror examples/finetune.c $(pkg-config --cflags --libs gemmatrain) -o "$tmp/finetune" \
  || fail "building examples/finetune.c against the shared library"
libs=$(LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/finetune")  # (grep -q on a pipe would SIGPIPE ldd under pipefail)
grep -q "$prefix/lib/libgemmatrain.so.0" <<<"$libs" || fail "not linked to the installed .so"
LD_LIBRARY_PATH=$prefix/lib "$tmp/finetune" configs/tiny.yaml train.steps=4 logging.progress=plain \
  output_dir="$tmp/run-shared" >"$tmp/shared.log" 2>&1 || { tail "$tmp/shared.log"; fail "the shared-library example run"; }
grep -q 'step 4' "$tmp/shared.log" || { tail "$tmp/shared.log"; fail "the shared-library example did not reach step 4"; }
# static: the same program with --static (the dependencies from Requires.private)
cc -std=c11 examples/finetune.c $(pkg-config --cflags gemmatrain) "$prefix/lib/libgemmatrain.a" \
  $(pkg-config --libs --static gemmatrain | sed 's/-lgemmatrain//') -o "$tmp/finetune-static" \
  || fail "building examples/finetune.c against the static library"
"$tmp/finetune-static" configs/tiny.yaml train.steps=4 logging.progress=plain output_dir="$tmp/run-static" \
  >"$tmp/static.log" 2>&1 || { tail "$tmp/static.log"; fail "the static example run"; }
"$prefix/bin/gemmatrain" --version >/dev/null 2>&1 || "$prefix/bin/gemmatrain" --help >/dev/null 2>&1 || fail "installed CLI"
echo "test-install: passed (installed into a temporary prefix; examples/finetune.c built with pkg-config, shared and static, and run)"
