#!/usr/bin/env bash
# Header step of CI: every C header in src/cymlp/_native compiles on its own.
#
# For each header, a one-line C file that includes only that header is compiled with
# -fsyntax-only -Wall -Wextra -Werror, by gcc and, when it is installed (apt-get, if
# missing), by clang, so that no header depends on what another one included first:
#   - a normal header (it must have an include guard) in each build configuration that
#     changes what it compiles: the default, CYMLP_THREADS_PTHREADS, OpenMP (-fopenmp,
#     when the compiler has omp.h) and CYMLP_PORTABLE;
#   - a part of the matrix-product template (_gemm_impl.h, its parts _gemm_epi.h and
#     _gemm_micro.h, and their parameter check _gemm_params.h) once per instantiation of
#     _gemm.h, with that instantiation's GEMM_* macros given with -D; read from _gemm.h,
#     so the check follows it (the x86-64 ones only on x86-64); and once without them,
#     which must stop at the parameter check's #error.
# Run from .ci/run, or alone: bash .ci/headers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
native=src/cymlp/_native
templates=(_gemm_impl.h _gemm_epi.h _gemm_micro.h _gemm_params.h)

if ! command -v clang >/dev/null; then
    echo "== headers: apt-get install clang"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        clang >/dev/null
fi
compilers=(gcc)
command -v clang >/dev/null && compilers+=(clang)

work=$(mktemp -d "${TMPDIR:-/tmp}/cymlp-headers.XXXXXX")
trap 'rm -rf "$work"' EXIT

# _gemm.h's instantiations: the GEMM_* defines before each #include "_gemm_impl.h", one
# line of -D flags per instantiation (AVX2 / AVX-512 ones, vector widths 32 and 64, only
# where CYMLP_X86 can hold: on x86-64)
x86=0
[ "$(uname -m)" = x86_64 ] && x86=1
mapfile -t variants < <(awk -v x86="$x86" '
    /^#define GEMM_/ { name = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); defs[name] = $0; next }
    /^#include "_gemm_impl.h"/ {
        line = ""
        for (name in defs) line = line " -D" name "=" defs[name]
        if (x86 || (defs["GEMM_VB"] != "32" && defs["GEMM_VB"] != "64")) print substr(line, 2)
        delete defs
    }' "$native/_gemm.h")
[ "${#variants[@]}" -ge 2 ] || { echo "headers.sh: no instantiations found in _gemm.h" >&2; exit 1; }

is_template() {
    local t
    for t in "${templates[@]}"; do [ "$1" = "$t" ] && return 0; done
    return 1
}

checked=0
failed=0
check() {  # COMPILER HEADER LABEL [flags...]: compile a file that includes only HEADER
    local cc=$1 header=$2 label=$3
    shift 3
    echo "#include \"$header\"" >"$work/one.c"
    if ! "$cc" -fsyntax-only -Wall -Wextra -Werror -I "$native" "$@" "$work/one.c" \
        >"$work/log" 2>&1; then
        echo "FAILED: $cc, $header ($label): $cc -fsyntax-only -Wall -Wextra -Werror" \
            "-I $native $* <<< '#include \"$header\"'"
        grep -E "error|warning" "$work/log" | sed 's/^/    /' | head -n 10
        failed=$((failed + 1))
    fi
    checked=$((checked + 1))
}

for cc in "${compilers[@]}"; do
    configs=("" "-DCYMLP_THREADS_PTHREADS=1" "-DCYMLP_PORTABLE=1")
    if echo '#include <omp.h>' | "$cc" -fopenmp -fsyntax-only -x c - 2>/dev/null; then
        configs+=("-fopenmp")
    else
        echo "== headers: $cc has no omp.h: OpenMP configuration left out"
    fi
    echo "== headers: $("$cc" --version | head -n 1)"
    for path in "$native"/*.h; do
        header=$(basename "$path")
        if is_template "$header"; then
            for v in "${variants[@]}"; do
                read -r -a flags <<<"$v"
                check "$cc" "$header" "${v}" "${flags[@]}"
            done
            continue
        fi
        # a normal header: an include guard around everything
        first=$(grep -m1 -E '^[[:space:]]*#' "$path" || true)
        if ! [[ $first =~ ^#ifndef[[:space:]]+[A-Z0-9_]+_H$ ]]; then
            echo "FAILED: $header: no include guard (its first directive is '$first')"
            failed=$((failed + 1))
        fi
        for config in "${configs[@]}"; do
            read -r -a flags <<<"$config"
            check "$cc" "$header" "${config:-default}" "${flags[@]}"
        done
    done
done
# a template without its parameters stops at _gemm_params.h's #error
echo '#include "_gemm_impl.h"' >"$work/one.c"
if gcc -fsyntax-only -I "$native" "$work/one.c" >"$work/log" 2>&1 \
    || ! grep -q '#error "GEMM_T ' "$work/log"; then
    echo "FAILED: _gemm_impl.h without GEMM_T did not stop at its #error"
    failed=$((failed + 1))
fi
echo "headers: $checked compiled alone, $failed failed (${compilers[*]}; ${#variants[@]}" \
    "template instantiations)"
[ "$failed" -eq 0 ]
