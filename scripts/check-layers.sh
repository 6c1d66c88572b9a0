#!/usr/bin/env bash
# Checks that the layers of the library only point down, from the #include lines of the
# tree (ROOT, the checkout this script is in unless given). `make check-layers` runs it,
# and `make test` before the suites.
#
# The rules:
#  - A layer's public header is include/xorpatch/LAYER.h; the headers in src/LAYER/ are
#    its private ones. include/xorpatch.h (the umbrella) includes every public header.
#  - A file of src/LAYER/ and the header include/xorpatch/LAYER.h include the public
#    headers of their own layer and of the layers below it, never one of a layer above
#    or beside it.
#  - A file of src/LAYER/ includes the private headers of its own layer only. The one
#    exception is src/core/'s (alloc.h, file.h, rng.h, strmap.h, lse.h, utf8.h): they are the
#    library's shared base, which every layer may include, and no part of its API.
#  - No library file (src/ below cli, include/xorpatch/) includes the umbrella header.
#  - A public header includes no private header; a program outside the library (fuzz/,
#    examples/) includes public headers only.
#  - Tests (tests/) and benchmarks (bench/) are no layer: they may include any header,
#    internals too, and are not checked.
# A violation is printed as FILE:LINE: the rule and what broke it, and the script exits
# 1; a tree that keeps every rule gets one line saying what was checked.
set -euo pipefail

# ---- the layers, lowest first: each with the layers it builds on directly ---------------
# A layer may include the headers of the layers it builds on, and of theirs, and so on.
LAYERS='
core
gguf    core
tok     gguf
model   tok
patch   model
probe   model
train   model
search  patch probe train
eval    search
job     eval search
serve   job
cli     serve train
'

root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root"

declare -A below floor
order=()
while read -r layer deps; do
    [ -n "$layer" ] || continue
    set -f
    # shellcheck disable=SC2206
    deps=($deps)
    set +f
    below[$layer]=' '
    floor[$layer]=1
    for d in "${deps[@]}"; do
        if [ -z "${floor[$d]:-}" ]; then
            echo "check-layers: the table lists $layer on $d before $d itself" >&2
            exit 2
        fi
        below[$layer]+="$d ${below[$d]# }"
        ((floor[$d] + 1 > floor[$layer])) && floor[$layer]=$((floor[$d] + 1))
    done
    order+=("$layer")
done <<<"$LAYERS"

is_layer() { [ -n "${floor[$1]:-}" ]; }
# Whether layer $1 may use layer $2: the same layer, or one it builds on.
builds_on() { [ "$1" = "$2" ] || [[ ${below[$1]} == *" $2 "* ]]; }

violations=0
report() {
    echo "$1:$2: $3" >&2
    violations=$((violations + 1))
}

# $1 file, $2 its layer, or "" for a program outside the library, $3 its kind: source (in
# src/), public (include/xorpatch/LAYER.h), umbrella (include/xorpatch.h) or outside.
check_file() {
    local file=$1 layer=$2 kind=$3 line inc target
    while IFS=: read -r line inc; do
        inc=${inc#*\"}
        inc=${inc%%\"*}
        case $inc in
        xorpatch.h)
            if [ "$kind" = public ]; then
                report "$file" "$line" "a library file includes the umbrella header xorpatch.h (include the headers of the layers $layer builds on)"
            elif [ "$kind" = source ] && [ "$layer" != cli ]; then
                report "$file" "$line" "a library file includes the umbrella header xorpatch.h (include xorpatch/$layer.h, its layer's header)"
            fi
            ;;
        xorpatch/*.h)
            target=${inc#xorpatch/}
            target=${target%.h}
            if ! is_layer "$target"; then
                report "$file" "$line" "includes $inc, the header of no layer in scripts/check-layers.sh"
            elif [ "$kind" = source ] || [ "$kind" = public ]; then
                if [ "$kind" = public ] && [ "$target" = "$layer" ]; then
                    report "$file" "$line" "includes itself"
                elif builds_on "$target" "$layer" && [ "$target" != "$layer" ]; then
                    report "$file" "$line" "includes $inc of layer $target, which is above $layer: layers only point down"
                elif ! builds_on "$layer" "$target"; then
                    report "$file" "$line" "includes $inc of layer $target, which $layer does not build on: layers only point down"
                fi
            fi
            ;;
        */*.h)
            target=${inc%%/*}
            if ! is_layer "$target" || [ ! -d "src/$target" ]; then
                [ "$kind" = outside ] ||
                    report "$file" "$line" "includes $inc, which is no header of a layer's src/ folder"
            elif [ "$kind" = public ] || [ "$kind" = umbrella ]; then
                report "$file" "$line" "a public header includes $inc, a private header of layer $target"
            elif [ "$kind" = outside ]; then
                report "$file" "$line" "a program outside the library includes $inc, a private header of layer $target (it may use the public headers only)"
            elif [ "$target" != "$layer" ] && [ "$target" != core ]; then
                report "$file" "$line" "includes $inc, a private header of layer $target: $layer may use another layer's public header only"
            fi
            ;;
        *)
            [ "$kind" = outside ] ||
                report "$file" "$line" "includes \"$inc\": write a library header as \"xorpatch/LAYER.h\" or \"LAYER/NAME.h\""
            ;;
        esac
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
}

files=0
shopt -s nullglob
for dir in src/*/; do
    layer=$(basename "$dir")
    if ! is_layer "$layer"; then
        report "$dir" 0 "src/$layer is no layer of the table in scripts/check-layers.sh"
        continue
    fi
    for f in "$dir"*.c "$dir"*.h; do
        check_file "$f" "$layer" source
        files=$((files + 1))
    done
done
for f in include/xorpatch/*.h; do
    layer=$(basename "$f" .h)
    if ! is_layer "$layer"; then
        report "$f" 0 "include/xorpatch/$layer.h is the header of no layer in scripts/check-layers.sh"
        continue
    fi
    check_file "$f" "$layer" public
    files=$((files + 1))
    if ! grep -q -E "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"xorpatch/$layer\.h\"" include/xorpatch.h; then
        report include/xorpatch.h 0 "the umbrella header does not include xorpatch/$layer.h"
    fi
done
check_file include/xorpatch.h "" umbrella
files=$((files + 1))
for f in fuzz/*.c examples/*.c; do
    check_file "$f" "" outside
    files=$((files + 1))
done

if ((violations)); then
    echo "check-layers: $violations include(s) break the layer rules (see scripts/check-layers.sh)" >&2
    exit 1
fi
# The order, floor by floor: layers on one floor build on none of each other.
picture=
for ((fl = 1; ; fl++)); do
    same=()
    for l in "${order[@]}"; do
        ((floor[$l] == fl)) && same+=("$l")
    done
    ((${#same[@]})) || break
    group=${same[*]}
    ((${#same[@]} > 1)) && group="{$group}"
    picture+="${picture:+ < }$group"
done
echo "check-layers: $files files keep the layer order $picture (includes point down, no other layer's private header, no umbrella header in the library)"
