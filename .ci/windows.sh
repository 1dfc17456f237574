#!/usr/bin/env bash
# Windows x64 step of CI: the C kernels that the Windows wheels run (_gemm.h, _vmath.h),
# cross-compiled into Windows programs on this Linux machine and run under wine.
#
# Every tests/native/test_*.c is a standalone C program (it includes the headers it
# tests from src/cymlp, prints its own "N passed, M failed" line last and exits nonzero
# on a failure). Each is built four ways, and each build is run with wine64:
#   clang-cl     clang in clang-cl mode (--driver-mode=cl, target x86_64-pc-windows-msvc:
#                _MSC_VER and __clang__, no __GNUC__; clang's intrinsic headers and
#                code generation) with setup.py's CLANG_CL_FLAGS: how the Windows wheels
#                are compiled. There are no MSVC or Windows SDK headers and libraries
#                here, so the C library's headers are mingw-w64's (read through a prelude
#                that includes them as a GNU compiler, then undefines __GNUC__) and the
#                program is linked by mingw-w64's linker against msvcrt.
#   cl.exe view  the same with __clang__ undefined too: what MSVC's cl.exe compiles
#                (no GCC vector extensions, so CYMLP_PORTABLE: the plain-C kernel only).
#   mingw-clang  clang --target=x86_64-w64-windows-gnu, linked by mingw-w64.
#   mingw-gcc    x86_64-w64-mingw32-gcc with OpenMP (1 and 2 threads compared) and
#                -Wa,-muse-unaligned-vector-move: GCC does not realign the stack for
#                32- and 64-byte vectors on Windows (GCC PR 54412; see the README's
#                platform notes), so the assembler is told to make every aligned vector
#                move an unaligned one, and the program is checked to have no aligned
#                ymm/zmm move at a stack address.
# The variants each program ran (avx512 only on a CPU with AVX-512) are printed with the
# sum of all results: "windows: N passed, M failed; variants run: ...".
#
# Installs what it needs with apt-get when missing (gcc-mingw-w64-x86-64, clang, wine64).
# The wine prefix is kept in $CYMLP_WINEPREFIX (default /tmp/cymlp-wine-<uid>) between
# runs; the first run creates it (about 10 s). CYMLP_NATIVE_TESTS=1 also builds and runs
# the programs natively with gcc. Run from .ci/run, or alone: bash .ci/windows.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

step() { echo "== windows: $*"; }
fail() { echo "windows.sh: $*" >&2; exit 1; }

# ---- tools ---------------------------------------------------------------------------
find_wine() {
    command -v wine64 || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true
}
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v clang >/dev/null \
    || [ -z "$(find_wine)" ]; then
    step "apt-get install gcc-mingw-w64-x86-64 clang wine64"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    t0=$SECONDS
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        gcc-mingw-w64-x86-64 clang wine64 >/dev/null
    echo "installed in $((SECONDS - t0)) s"
fi
wine=$(find_wine)
[ -n "$wine" ] || fail "wine64 not found after installing it"
mingw_inc=$(dirname "$(x86_64-w64-mingw32-gcc -print-file-name=libmsvcrt.a)")/../include
mingw_inc=$(cd "$mingw_inc" && pwd)
[ -f "$mingw_inc/_mingw.h" ] || fail "mingw-w64 headers not found (looked in $mingw_inc)"
echo "$(x86_64-w64-mingw32-gcc --version | head -n1); $(x86_64-w64-mingw32-as --version | head -n1)"
echo "$(clang --version | head -n1); wine $("$wine" --version 2>/dev/null || echo '?')"

# setup.py's clang-cl flags (one list, read from its source)
read -r -a clang_cl_flags < <(python3 - <<'EOF'
import ast
tree = ast.parse(open("setup.py").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CLANG_CL_FLAGS":
        print(" ".join(ast.literal_eval(node.value)))
EOF
)
[ "${#clang_cl_flags[@]}" -gt 0 ] || fail "CLANG_CL_FLAGS not found in setup.py"

work=$(mktemp -d "${TMPDIR:-/tmp}/cymlp-windows.XXXXXX")
trap 'rm -rf "$work"' EXIT

# clang-cl mode with mingw-w64's C headers, which assume a GNU compiler (without
# __GNUC__ they define __attribute__ away and misplace __declspec)
cat >"$work/clang_cl_prelude.h" <<'EOF'
#define __GNUC__ 4
#include <_mingw.h>
#ifndef __MINGW_IMPORT
#define __MINGW_IMPORT extern __declspec(dllimport)
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <sys/types.h>
#undef __MINGW_ATTRIB_DEPRECATED
#define __MINGW_ATTRIB_DEPRECATED
#include <stdlib.h>
#undef __GNUC__
/* clang's intrin.h declares _setjmp(jmp_buf) as MSVC's setjmp.h has it, not as mingw's */
#define _INC_SETJMP
typedef struct { unsigned long long Part[2]; } _JBTYPE;
typedef _JBTYPE jmp_buf[16];
EOF
# what MSVC's C runtime has and mingw-w64's names differently
echo 'int _fltused = 0;' >"$work/fltused.c"
x86_64-w64-mingw32-gcc -c "$work/fltused.c" -o "$work/fltused.o"
cl_link=("$work/fltused.o" -Wl,--defsym,__chkstk=___chkstk_ms -static)

# the wheels' threads: cymlp's pool on Win32 threads (setup.py: CYMLP_THREADS=win32)
cl_threads=(/DCYMLP_THREADS_WIN32=1)
build_clang_cl() {  # SRC EXE [extra clang-cl flags]
    local src=$1 exe=$2
    shift 2
    clang --driver-mode=cl --target=x86_64-pc-windows-msvc /nologo /W3 "${clang_cl_flags[@]}" \
        /Zl /GS- -Isrc/cymlp/_native -imsvc "$mingw_inc" "/FI$work/clang_cl_prelude.h" "$@" \
        "${cl_threads[@]}" \
        /c "/Fo$exe.obj" -- "$src" || return 1
    x86_64-w64-mingw32-gcc "$exe.obj" "${cl_link[@]}" -o "$exe"
}
build_cl_view() {  # (cl.exe builds take OpenMP, which this view has not: one thread;
    cl_threads=(/DCYMLP_THREADS_NONE=1)  # each build runs in a subshell of its own)
    build_clang_cl "$1" "$2" /U__clang__ -Wno-builtin-macro-redefined
}
build_mingw_clang() {
    clang --target=x86_64-w64-windows-gnu -O3 -fno-math-errno -fno-trapping-math \
        -DCYMLP_THREADS_WIN32=1 -Isrc/cymlp/_native -c "$1" -o "$2.o" || return 1
    x86_64-w64-mingw32-gcc "$2.o" -static -o "$2"
}
build_mingw_gcc() {
    x86_64-w64-mingw32-gcc -O3 -g0 -fno-math-errno -fno-trapping-math -fopenmp \
        -Wa,-muse-unaligned-vector-move -Isrc/cymlp/_native "$1" -static -o "$2" || return 1
    # GCC PR 54412: an aligned 32/64-byte move at a stack address may fault on Windows
    local aligned
    aligned=$(x86_64-w64-mingw32-objdump -d --no-show-raw-insn "$2" \
        | grep -E 'vmova(ps|pd)|vmovdqa(32|64)?' | grep -E '%[yz]mm' | grep -E '\(%r[sb]p[,)]' \
        || true)
    if [ -n "$aligned" ]; then
        echo "$aligned" | head -n 5
        echo "windows.sh: $2 has aligned vector moves at stack addresses" >&2
        return 1
    fi
}
build_native() { gcc -O2 -fopenmp -fno-math-errno -fno-trapping-math -Isrc/cymlp/_native "$1" -o "$2" -lm; }

builds=(clang-cl cl.exe-view mingw-clang mingw-gcc)
[ "${CYMLP_NATIVE_TESTS:-0}" = 1 ] && builds+=(native-gcc)

shopt -s nullglob
tests=(tests/native/test_*.c)
shopt -u nullglob
[ "${#tests[@]}" -gt 0 ] || fail "no tests/native/test_*.c"

# ---- the wine prefix -------------------------------------------------------------------
export WINEPREFIX=${CYMLP_WINEPREFIX:-/tmp/cymlp-wine-$(id -u)}
export WINEDEBUG=-all
export WINEDLLOVERRIDES="mscoree,mshtml="  # no Mono or Gecko installer in a new prefix
export OMP_WAIT_POLICY=passive              # (2 shared cores: OpenMP threads sleep, not spin)
if [ ! -f "$WINEPREFIX/system.reg" ]; then
    step "creating the wine prefix $WINEPREFIX"
    t0=$SECONDS
    "$wine" wineboot --init >/dev/null 2>&1 || true
    wineserver_bin=$(command -v wineserver || echo /usr/lib/wine/wineserver64)
    "$wineserver_bin" -w 2>/dev/null || true
    echo "created in $((SECONDS - t0)) s"
fi

# ---- build and run: a job per program and build, as many at a time as there are cores --
job() {  # NAME BUILD SRC: build, run; results in $work/NAME-BUILD.{log,out,rc,time}
    local name=$1 build=$2 src=$3 exe="$work/$1-$2.exe" t0=$SECONDS rc=0 tb
    case $build in
        clang-cl) build_clang_cl "$src" "$exe" ;;
        cl.exe-view) build_cl_view "$src" "$exe" ;;
        mingw-clang) build_mingw_clang "$src" "$exe" ;;
        mingw-gcc) build_mingw_gcc "$src" "$exe" ;;
        native-gcc) build_native "$src" "$exe" ;;
    esac >"$exe.log" 2>&1 || { echo build >"$exe.rc"; return; }
    tb=$((SECONDS - t0))
    t0=$SECONDS
    if [ "$build" = native-gcc ]; then
        timeout 900 "$exe" >"$exe.out" 2>&1 || rc=$?
    else
        timeout 900 "$wine" "$exe" >"$exe.out" 2>&1 || rc=$?
        # A program that ends without printing a thing never reached main(): once in a
        # CI run here, wine gave exit code 1 and no output for a program that passed on
        # the next run. Such a start is tried once more and reported; a program that
        # prints anything (a failing test, a crash message) is judged on its first run.
        if [ "$rc" -ne 0 ] && [ -z "$(tr -d '[:space:]' <"$exe.out")" ]; then
            echo "first run under wine: exit code $rc and no output; ran it again" \
                >"$exe.retry"
            rc=0
            timeout 900 "$wine" "$exe" >"$exe.out" 2>&1 || rc=$?
        fi
    fi
    echo "$rc" >"$exe.rc"
    echo "build ${tb} s, run $((SECONDS - t0)) s" >"$exe.time"
}
step "building and running ${tests[*]##*/} with: ${builds[*]} ($(nproc) at a time)"
for build in "${builds[@]}"; do
    for src in "${tests[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n || true; done
        job "$(basename "$src" .c)" "$build" "$src" &
    done
done
wait

add_names() {  # LIST NAMES: the union, in order of first appearance
    local list=$1 name names
    IFS=',' read -r -a names <<<"$2"
    for name in "${names[@]}"; do
        name=$(echo "$name" | tr -d ' ')
        [ -n "$name" ] && [ "$name" != "-" ] || continue
        case ",$list," in *",$name,"*) ;; *) list=${list:+$list,}$name ;; esac
    done
    echo "$list"
}
passed=0
failed=0
ran=""
no_cpu=""
summary=()
for build in "${builds[@]}"; do
    for src in "${tests[@]}"; do
        name=$(basename "$src" .c)
        exe="$work/$name-$build.exe"
        step "$name: $build"
        rc=$(cat "$exe.rc" 2>/dev/null || echo build)
        if [ "$rc" = build ]; then
            sed 's/^/    /' "$exe.log"
            failed=$((failed + 1))
            summary+=("$name $build: BUILD FAILED")
            continue
        fi
        out=$(tr -d '\r' <"$exe.out")
        [ -f "$exe.retry" ] && echo "    ($(cat "$exe.retry"))"
        printf '%s\n' "$out" | sed 's/^/    /'
        # wine's own diagnostics ("wine client error:...", seen once in a CI run here
        # after a program had printed its summary and exited 0) are not the program's
        # output: the summary is the last line the program printed; the exit code still
        # has to be 0
        last=$(printf '%s\n' "$out" | grep -v '^wine client error:' | tail -n 1)
        if [[ $last =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
            p=${BASH_REMATCH[1]}
            f=${BASH_REMATCH[2]}
            if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # (nonzero exit, no failure named)
        else
            p=0
            f=1  # crashed, or no summary line
            echo "    (exit code $rc, no 'N passed, M failed' line at the end)"
        fi
        passed=$((passed + p))
        failed=$((failed + f))
        summary+=("$name $build: $p passed, $f failed ($(cat "$exe.time"))")
        line=$(printf '%s\n' "$out" | grep -m1 'variants run:' || true)
        if [ -n "$line" ]; then
            ran=$(add_names "$ran" "$(sed -E 's/.*variants run: ([^;]*).*/\1/' <<<"$line")")
            no_cpu=$(add_names "$no_cpu" \
                "$(sed -E 's/.*not on this CPU: ([^;]*).*/\1/' <<<"$line")")
        fi
    done
done

step "summary"
printf '  %s\n' "${summary[@]}"
skipped=""
[ -n "$no_cpu" ] && skipped="; compiled but not run, not on this CPU: ${no_cpu//,/, }"
echo "windows: $passed passed, $failed failed; variants run: ${ran//,/, }$skipped;" \
    "builds: ${builds[*]}; $((SECONDS - started)) s"
[ "$failed" -eq 0 ]
